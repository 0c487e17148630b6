//! Hostile paths, sent as raw request lines over a `TcpStream` so that no
//! client library normalizes them, must never yield a file outside the root.
//!
//! A sentinel file with unique content sits next to the served root, and
//! symlinks inside the root point out of it. Every request in the corpus must
//! be answered 400, 403 or 404 (or closed unanswered), no answer may contain
//! the sentinel or `/etc/passwd`, and every refusal the server made itself
//! must be counted as rejected.

// These tests drive the real server binary; the rule that only xtask's
// tools/ starts processes is about xtask.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};

use support::{ServeProcess, connect, get_raw};

const SENTINEL: &str = "EDGELAB-SENTINEL-6f1d0c2e-outside-the-root";
const PASSWD_MARK: &str = "root:x:0:0";

/// Request targets, exactly as they go on the request line.
const HOSTILE_TARGETS: &[&str] = &[
    "/../outside/secret.txt",
    "/../../../../../../etc/passwd",
    "/..",
    "/../",
    "/./../outside/secret.txt",
    "/a/../../outside/secret.txt",
    "/public.txt/../../outside/secret.txt",
    "/%2e%2e/outside/secret.txt",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/%2E%2E/outside/secret.txt",
    "/.%2e/outside/secret.txt",
    "/%2e./outside/secret.txt",
    "/%2e%2e%2foutside%2fsecret.txt",
    "/..%2foutside%2fsecret.txt",
    "/..%2Foutside/secret.txt",
    "/%2f..%2f..%2fetc%2fpasswd",
    "/%2fetc%2fpasswd",
    "/..%5coutside%5csecret.txt",
    "/..\\outside\\secret.txt",
    "/..\\..\\..\\etc\\passwd",
    "/%5c..%5c..%5cetc%5cpasswd",
    "/%00",
    "/public.txt%00",
    "/public.txt%00.html",
    "/..%00/outside/secret.txt",
    "/%0a/etc/passwd",
    "//etc/passwd",
    "///etc/passwd",
    "//../outside/secret.txt",
    "/public//..//..//outside/secret.txt",
    "/%252e%252e/outside/secret.txt",
    "/..%252f..%252fetc%252fpasswd",
    "/%c0%ae%c0%ae/outside/secret.txt",
    "/%e0%80%ae%e0%80%ae/outside/secret.txt",
    "/%c0%af",
    "/%",
    "/%2",
    "/%zz/secret",
    "/%u002e%u002e/outside/secret.txt",
    "/etc/passwd",
    "/etc/shadow",
    "/etc/",
    "/escape/secret.txt",
    "/escape/",
    "/escape-file",
    "/escape/../escape/secret.txt",
    "/.edgelab/../outside/secret.txt",
    "/.edgelab/secret",
    "/..;/outside/secret.txt",
    "/.../outside/secret.txt",
    "/",
    "etc/passwd",
    "*",
    "http://t/../outside/secret.txt",
    "http://t/%2e%2e/outside/secret.txt",
    "http://t//etc/passwd",
    "/../outside/secret.txt?x=1",
];

/// Whole requests that are malformed beyond the path.
const HOSTILE_REQUESTS: &[&[u8]] = &[
    b"GET /\x00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /../outside/secret.txt HTTP/1.0\r\n\r\n",
    b"GET /%2e%2e/outside/secret.txt\r\n\r\n",
    b"GET /\xc0\xae\xc0\xae/outside/secret.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /public.txt/../../outside/secret.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
];

#[test]
fn no_hostile_path_leaves_the_root() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let outside = scratch.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SENTINEL).unwrap();
    std::fs::write(root.join("public.txt"), "public\n").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", root.join("escape-file")).unwrap();
    std::os::unix::fs::symlink("public.txt", root.join("inside-link")).unwrap();
    let server = ServeProcess::start(&root, &["--quiet"]);

    // The controls: plain files, and a symlink that stays inside, are served.
    assert_eq!(get_raw(server.address, "/public.txt").body, b"public\n");
    assert_eq!(get_raw(server.address, "/inside-link").body, b"public\n");

    let mut requests: Vec<Vec<u8>> = HOSTILE_TARGETS
        .iter()
        .map(|target| format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
        .map(String::into_bytes)
        .collect();
    requests.extend(HOSTILE_REQUESTS.iter().map(|request| request.to_vec()));
    assert!(requests.len() >= 40);

    let mut n_refused_by_us = 0u64;
    for request in &requests {
        let shown = String::from_utf8_lossy(request).lines().next().unwrap_or_default().to_owned();
        let answer = exchange(server.address, request);
        let answer_text = String::from_utf8_lossy(&answer);
        assert!(!answer_text.contains(SENTINEL), "{shown:?} leaked the sentinel");
        assert!(!answer_text.contains(PASSWD_MARK), "{shown:?} leaked /etc/passwd");
        if answer.is_empty() {
            continue; // Closed unanswered: nothing leaked.
        }
        let status = answer_text.split(' ').nth(1).unwrap_or_default();
        assert!(["400", "403", "404"].contains(&status), "{shown:?} answered {status}:\n{answer_text}");
        // Our own refusals carry our text bodies; hyper's 400s have none.
        if answer_text.ends_with("forbidden\n") || answer_text.ends_with("bad request\n") {
            n_refused_by_us += 1;
        }
    }

    let counters = server.counters();
    assert_eq!(counters["rejected"], n_refused_by_us, "{counters}");
    assert!(n_refused_by_us >= 40, "only {n_refused_by_us} requests were rejected");
    assert_eq!(get_raw(server.address, "/public.txt").status, 200, "still serving");
}

/// Sends one request and returns every byte the server sent back before
/// closing the connection.
fn exchange(address: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(address);
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    // A reset after the answer (the server closing with unread input) is as
    // good as an EOF here: what matters is what was sent.
    let _ = stream.read_to_end(&mut answer);
    answer
}
