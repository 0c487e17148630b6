//! Thousands of idle connections cannot exhaust the server's file
//! descriptors: past `--max-connections` they are refused at once with a
//! 503, the ones it holds are closed after `--idle-timeout`, and then normal
//! requests are served again.
//!
//! The test opens 1500 connections that never send a byte, against a cap of
//! 200 and an idle timeout of 3 s, then waits (bounded) until the server has
//! closed every one of them. Each connection tells which fate it met: a 503
//! then EOF (refused), or EOF with no byte (held, then timed out). The counts
//! are checked against the cap and against the server's own counters, so the
//! outcome does not depend on timing beyond the one stated precondition
//! that opening the connections takes well under the idle timeout.

// These tests drive the real server binary; the rule that only xtask's
// tools/ starts processes is about xtask.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{ServeProcess, get_raw};

const N_IDLE_CONNECTIONS: usize = 1500;
const MAX_CONNECTIONS: usize = 200;
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Descriptors the server has besides connections: stdio, the listener,
/// epoll, the runtime's wakers, the log.
const OTHER_DESCRIPTORS: usize = 32;

#[test]
fn idle_connections_are_capped_then_timed_out() {
    raise_own_open_file_limit(N_IDLE_CONNECTIONS as u64 + 200);
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("hello.txt"), "hello\n").unwrap();
    let server = ServeProcess::start(
        root.path(),
        &["--quiet", "--max-connections", &MAX_CONNECTIONS.to_string(), "--idle-timeout", "3"],
    );

    let opening_started = Instant::now();
    let mut idle_connections: Vec<TcpStream> = (0..N_IDLE_CONNECTIONS)
        .map(|_| TcpStream::connect_timeout(&server.address, Duration::from_secs(5)).expect("connecting"))
        .collect();
    let opening_took = opening_started.elapsed();
    assert!(
        opening_took < IDLE_TIMEOUT / 2,
        "opening {N_IDLE_CONNECTIONS} connections took {opening_took:?}: too slow for this test's timing"
    );

    // While the held connections are still within their idle timeout, the
    // server is at its cap: a new request is refused, not queued, and the
    // server holds no more descriptors than the cap allows.
    let at_cap = get_raw(server.address, "/hello.txt");
    assert_eq!(at_cap.status, 503, "{at_cap:?}");
    let n_descriptors = std::fs::read_dir(format!("/proc/{}/fd", server.pid())).unwrap().count();
    assert!(
        n_descriptors <= MAX_CONNECTIONS + OTHER_DESCRIPTORS,
        "the server has {n_descriptors} descriptors open with a cap of {MAX_CONNECTIONS} connections"
    );

    // Every idle connection must be closed by the server, within the idle
    // timeout plus a margin.
    let deadline = Instant::now() + IDLE_TIMEOUT + Duration::from_secs(5);
    let mut n_refused = 0u64;
    let mut n_timed_out = 0usize;
    for connection in &mut idle_connections {
        match read_until_closed(connection, deadline) {
            Some(answer) if answer.starts_with(b"HTTP/1.1 503 ") => n_refused += 1,
            Some(answer) if answer.is_empty() => n_timed_out += 1,
            Some(answer) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&answer)),
            None => panic!("a connection was still open after {:?}", IDLE_TIMEOUT + Duration::from_secs(5)),
        }
    }
    assert!(n_timed_out <= MAX_CONNECTIONS, "{n_timed_out} connections were held at once");
    assert!(n_timed_out > 0, "no connection was held at all");
    assert_eq!(n_refused as usize + n_timed_out, N_IDLE_CONNECTIONS);

    // Normal service is back, promptly.
    let request_started = Instant::now();
    let served = get_raw(server.address, "/hello.txt");
    assert_eq!((served.status, served.body.as_slice()), (200, &b"hello\n"[..]));
    assert!(request_started.elapsed() < Duration::from_secs(2));

    let counters = server.counters();
    // The one request refused at the cap is counted as a refusal too.
    assert_eq!(counters["refused_connections"], n_refused + 1, "{counters}");
    assert_eq!(counters["requests"], 1, "{counters}");
}

/// Reads until the server closes the connection and returns what it sent,
/// or `None` if it is still open at `deadline`.
fn read_until_closed(connection: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        let remaining = deadline.checked_duration_since(Instant::now())?;
        connection.set_read_timeout(Some(remaining.max(Duration::from_millis(1)))).unwrap();
        match connection.read(&mut buffer) {
            Ok(0) => return Some(answer),
            Ok(n_read) => answer.extend_from_slice(&buffer[..n_read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            // A reset is a close too.
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return Some(answer),
            Err(error) => panic!("reading an idle connection: {error}"),
        }
    }
}

/// 1500 client sockets need more than the usual soft limit of 1024.
fn raise_own_open_file_limit(needed: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    assert!(limit.rlim_max >= needed, "the hard open-file limit {} is below {needed}", limit.rlim_max);
    limit.rlim_cur = limit.rlim_cur.max(needed);
    // SAFETY: as above; the soft limit stays within the hard limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// A client that trickles its headers a byte at a time is never idle, so the
/// idle timeout alone would keep it forever; the header timeout closes it.
#[test]
fn trickled_headers_are_cut_off_by_the_header_timeout() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("hello.txt"), "hello\n").unwrap();
    let server = ServeProcess::start(root.path(), &["--quiet", "--idle-timeout", "30", "--header-timeout", "1"]);
    let mut connection = support::connect(server.address);
    let started = Instant::now();
    let request =
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in request {
        if std::io::Write::write_all(&mut connection, &[*byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        // All bytes went out; the close must show up as EOF or a reset.
        let mut rest = Vec::new();
        let _ = connection.read_to_end(&mut rest);
        started.elapsed()
    });
    assert!(closed_after >= Duration::from_millis(900), "closed after {closed_after:?}");
    assert!(closed_after < Duration::from_secs(5), "still open after {closed_after:?}");
    let mut rest = Vec::new();
    let _ = connection.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("hello"), "the trickled request was answered");
}
