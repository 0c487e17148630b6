//! HTTP behaviour on the wire and the life of the process: methods, missing
//! files, keep-alive, per-client counters, the reserved counters path,
//! signals and the summary, start-up errors, the log and pid files.

// These tests drive real programs (the server binary, curl); the rule that
// only xtask's tools/ starts processes is about xtask.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::Write;
use std::process::Command;

use support::{ServeProcess, connect, get_raw, read_response, require_tool, run_ok, send_raw};

fn root_with_files() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("hello.txt"), "hello\n").unwrap();
    std::fs::create_dir(root.path().join("folder")).unwrap();
    std::fs::write(root.path().join("folder").join("data.bin"), [7u8; 1000]).unwrap();
    root
}

#[test]
fn other_methods_get_405_with_allow() {
    let root = root_with_files();
    let server = ServeProcess::start(root.path(), &["--quiet"]);
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let request =
            format!("{method} /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let response = send_raw(server.address, request.as_bytes());
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"), "{method}");
    }
    assert_eq!(std::fs::read(root.path().join("hello.txt")).unwrap(), b"hello\n");
    let counters = server.counters();
    assert_eq!(counters["requests"], 5);
    assert_eq!(counters["rejected"], 0);
}

#[test]
fn missing_files_and_folders_get_404() {
    let root = root_with_files();
    let server = ServeProcess::start(root.path(), &["--quiet"]);
    for path in ["/missing", "/folder", "/folder/", "/", "/hello.txt/inside", "/folder/missing.bin"] {
        let response = get_raw(server.address, path);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.body, b"not found\n", "{path}");
    }
    let found = get_raw(server.address, "/folder/data.bin");
    assert_eq!(found.status, 200);
    assert_eq!(found.body, [7u8; 1000]);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let root = root_with_files();
    let server = ServeProcess::start(root.path(), &["--quiet"]);
    let mut stream = connect(server.address);
    stream.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let first = read_response(&mut stream, false);
    assert_eq!((first.status, first.body.as_slice()), (200, &b"hello\n"[..]));
    assert_eq!(first.header("connection"), None, "the connection stays open");

    stream.write_all(b"HEAD /folder/data.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let head = read_response(&mut stream, true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));

    // If HEAD had sent body bytes, they would be read here as the next
    // response's status line and this would fail.
    stream.write_all(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let missing = read_response(&mut stream, false);
    assert_eq!(missing.status, 404);

    stream.write_all(b"GET /folder/data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=10-19\r\n\r\n").unwrap();
    let range = read_response(&mut stream, false);
    assert_eq!(range.status, 206);
    assert_eq!(range.body, [7u8; 10]);

    let counters = server.counters();
    assert_eq!(counters["requests"], 4);
    assert_eq!(counters["bytes_sent"], 6 + 10 + 10);
}

#[test]
fn counters_are_kept_per_client_address() {
    require_tool("curl", "curl");
    let root = root_with_files();
    let server = ServeProcess::start(root.path(), &["--quiet"]);
    let fetch = |interface: &str, path: &str| {
        run_ok(Command::new("curl").args([
            "--silent",
            "--fail",
            "--max-time",
            "10",
            "--interface",
            interface,
            "--output",
            "/dev/null",
            &server.url(path),
        ]));
    };
    fetch("127.0.0.1", "/hello.txt");
    fetch("127.0.0.2", "/folder/data.bin");
    fetch("127.0.0.2", "/folder/data.bin");
    fetch("127.0.0.3", "/hello.txt");

    // Reading the counters is not itself counted.
    let _ = server.counters();
    let counters = server.counters();
    assert_eq!(counters["requests"], 4, "{counters}");
    assert_eq!(counters["bytes_sent"], 6 + 2000 + 6, "{counters}");
    let clients = &counters["clients"];
    assert_eq!(clients["127.0.0.1"]["requests"], 1, "{counters}");
    assert_eq!(clients["127.0.0.1"]["bytes_sent"], 6, "{counters}");
    assert_eq!(clients["127.0.0.2"]["requests"], 2, "{counters}");
    assert_eq!(clients["127.0.0.2"]["bytes_sent"], 2000, "{counters}");
    assert_eq!(clients["127.0.0.3"]["requests"], 1, "{counters}");
    assert!(counters["started_at"].as_str().unwrap().ends_with('Z'), "{counters}");
    assert_eq!(counters["rejected"], 0);
}

#[test]
fn counters_path_answers_json_and_nothing_else_under_it() {
    let root = root_with_files();
    std::fs::create_dir(root.path().join(".edgelab")).unwrap();
    std::fs::write(root.path().join(".edgelab").join("counters"), "not me").unwrap();
    std::fs::write(root.path().join(".edgelab").join("other"), "nor me").unwrap();
    let server = ServeProcess::start(root.path(), &["--quiet"]);
    let response = get_raw(server.address, "/.edgelab/counters");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let counters: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    for field in ["requests", "bytes_sent", "started_at", "clients", "rejected"] {
        assert!(counters.get(field).is_some(), "{field} missing from {counters}");
    }
    assert_eq!(get_raw(server.address, "/.edgelab/other").status, 404);
}

#[test]
fn sigint_prints_the_summary_and_exits_zero() {
    let root = root_with_files();
    let server = ServeProcess::start(root.path(), &[]);
    for path in ["/hello.txt", "/folder/data.bin", "/missing"] {
        get_raw(server.address, path);
    }
    let (status, lines) = server.stop_with(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert!(lines[0].starts_with("serving "), "{lines:#?}");
    let request_lines: Vec<&String> = lines.iter().filter(|line| line.contains(" MB  ")).collect();
    assert_eq!(request_lines.len(), 3, "{lines:#?}");
    assert!(request_lines[0].contains("200  GET /hello.txt"), "{lines:#?}");
    assert!(request_lines[2].contains("404  GET /missing"), "{lines:#?}");
    let summary =
        lines.iter().find(|line| line.starts_with("summary: ")).unwrap_or_else(|| panic!("no summary in {lines:#?}"));
    // 6 + 1000 + 10 ("not found\n") body bytes.
    assert!(summary.starts_with("summary: 3 requests, 0.001 MB sent"), "{summary}");
    assert!(
        lines.iter().any(|line| line.trim_start().starts_with("127.0.0.1") && line.contains("3 requests")),
        "{lines:#?}"
    );
}

#[test]
fn sigterm_prints_the_summary_and_exits_zero() {
    let root = root_with_files();
    let log = root.path().join("serve.log");
    let server = ServeProcess::start(root.path(), &["--quiet", "--log", log.to_str().unwrap()]);
    get_raw(server.address, "/hello.txt");
    let (status, lines) = server.stop_with(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));
    assert!(lines.iter().any(|line| line.starts_with("summary: 1 requests")), "{lines:#?}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(!log_text.contains(" MB  127.0.0.1:"), "quiet still logged requests:\n{log_text}");
    assert!(log_text.contains("summary: 1 requests"), "{log_text}");
}

#[test]
fn log_and_pid_files() {
    let root = root_with_files();
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("serve.log");
    let pid_file = scratch.path().join("serve.pid");
    let server =
        ServeProcess::start(root.path(), &["--log", log.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap()]);
    let pid_text = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid_text.trim(), server.pid().to_string());
    get_raw(server.address, "/hello.txt");
    get_raw(server.address, "/%2e%2e/x");
    let (status, lines) = server.stop_with(libc::SIGINT);
    assert_eq!(status.code(), Some(0));
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    assert!(!lines.iter().any(|line| line.contains(" MB  1")), "request lines went to stdout: {lines:#?}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    let log_lines: Vec<&str> = log_text.lines().collect();
    assert!(log_lines[0].ends_with("200  GET /hello.txt"), "{log_text}");
    assert!(log_lines[0].starts_with("    1    0.000 MB  127.0.0.1:"), "{log_text}");
    assert!(log_lines[1].contains("403  GET /%2e%2e/x  rejected: dot segment"), "{log_text}");
    assert!(log_text.contains("summary: 2 requests"), "{log_text}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let root = root_with_files();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_edgelab-serve"))
        .arg("--root")
        .arg(root.path())
        .args(["--address", "127.0.0.1", "--port", &port])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("port {port} on 127.0.0.1 is in use"))
            && stderr.contains("stop it or set file-server port in lab.kdl"),
        "{stderr}"
    );
}

#[test]
fn a_missing_root_is_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("no-such-folder");
    let output = Command::new(env!("CARGO_BIN_EXE_edgelab-serve"))
        .arg("--root")
        .arg(&missing)
        .args(["--address", "127.0.0.1", "--port", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("root {} cannot be served", missing.display())), "{stderr}");
}
