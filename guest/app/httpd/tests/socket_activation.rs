//! httpd under systemd's socket-activation protocol, through systemd's own
//! `systemd-socket-activate` (the guests start the container the same way:
//! systemd holds the socket, podman passes it on as fd 3). Nothing listens
//! but systemd-socket-activate until the first connection; that connection
//! and the ones after are answered on the passed socket, whatever port
//! httpd's own arguments name.

// The app's crate stands alone (its image builds without the workspace), so
// its test starts systemd-socket-activate and python3 itself, not through
// xtask's `tools/` wrappers.
#![allow(clippy::disallowed_methods)]

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct Activator(Child);

impl Drop for Activator {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn get(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn serves_on_the_socket_systemd_passes() {
    let root = tempfile_dir();
    std::fs::write(root.join("index.html"), "activated\n").unwrap();
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let child = Command::new("systemd-socket-activate")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(env!("CARGO_BIN_EXE_httpd"))
        // A port httpd would bind itself: it must not, the passed socket wins.
        .args(["--address", "127.0.0.1", "--port", "1", "--root"])
        .arg(&root)
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (Debian's systemd package) runs");
    let mut activator = Activator(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match get(port) {
            Ok(answer) => break answer,
            Err(err) => {
                assert!(Instant::now() < deadline, "nothing answered on 127.0.0.1:{port}: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nactivated\n"), "{answer}");
    assert!(get(port).unwrap().ends_with("activated\n"), "a second request on the same socket");

    activator.0.kill().unwrap();
    let mut stderr = String::new();
    activator.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("on the socket systemd passed (fd 3, 127.0.0.1:"), "httpd's log:\n{stderr}");
    std::fs::remove_dir_all(&root).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("httpd-activation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs httpd with fd 3 made by `python3 -c SETUP` (which binds `fd`) and
/// `LISTEN_FDS=1`, `LISTEN_PID` its own pid; its exit code and stderr.
fn httpd_with_fd3(setup: &str) -> (Option<i32>, String) {
    let script = format!(
        "import os, socket, sys\n{setup}\nos.dup2(fd, 3) if fd != 3 else os.set_inheritable(3, True)\n\
         os.execve(sys.argv[1], [sys.argv[1]], dict(os.environ, LISTEN_FDS='1', LISTEN_PID=str(os.getpid())))"
    );
    let out = Command::new("python3")
        .args(["-c", &script, env!("CARGO_BIN_EXE_httpd")])
        .stderr(Stdio::piped())
        .output()
        .expect("python3 runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A passed fd 3 that httpd cannot serve ends it at once with the reason, so
/// that systemd's `Restart=on-failure` starts the container again; it must
/// not spin on failing accepts while the VIP's connections queue (seen once
/// in a guest: fd 3 was another socket).
#[test]
fn a_passed_fd_it_cannot_serve_ends_httpd() {
    let (code, stderr) = httpd_with_fd3("fd = os.open('/dev/null', os.O_RDONLY)");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("fd 3 (LISTEN_FDS) is not a TCP socket: Socket operation on non-socket"), "{stderr}");

    // A TCP socket that is bound but does not listen: accept fails (EINVAL).
    let (code, stderr) = httpd_with_fd3("s = socket.socket(); s.bind(('127.0.0.1', 0)); fd = s.detach()");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot accept connections"), "{stderr}");
}
