//! What the end-to-end tests share: starting the real `edgelab-serve`
//! binary on a free loopback port, speaking raw HTTP/1.1 to it over a
//! `TcpStream` (so no client library normalizes what is sent), and running
//! the real clients (curl, ostree) with an install hint when one is missing.
//!
//! Every test file includes this module and uses part of it, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single network step of a test may take before it fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `edgelab-serve` on 127.0.0.1, killed when dropped.
pub struct ServeProcess {
    child: Child,
    pub address: SocketAddr,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    stdout_reader: Option<JoinHandle<()>>,
}

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ServeProcess {
    /// Starts the server on `root`, on a port the kernel picks, and waits for
    /// its "serving ... on http://ADDR:PORT" line.
    pub fn start(root: &Path, extra_args: &[&str]) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgelab-serve"))
            .arg("--root")
            .arg(root)
            .args(["--address", "127.0.0.1", "--port", "0"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting edgelab-serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let (ready_sender, ready_receiver) = mpsc::channel();
        let reader_lines = stdout_lines.clone();
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.split("on http://").nth(1) {
                    let _ = ready_sender.send(address.to_owned());
                }
                reader_lines.lock().unwrap().push(line);
            }
        });
        let address = match ready_receiver.recv_timeout(STEP_TIMEOUT) {
            Ok(address) => address.parse().expect("the ready line names an address"),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("edgelab-serve did not print its ready line (exit: {status:?})");
            }
        };
        ServeProcess { child, address, stdout_lines, stdout_reader: Some(stdout_reader) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `GET /.edgelab/counters`, parsed.
    pub fn counters(&self) -> serde_json::Value {
        let response =
            send_raw(self.address, b"GET /.edgelab/counters HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(response.status, 200, "counters: {response:?}");
        serde_json::from_slice(&response.body).expect("counters are JSON")
    }

    /// Sends `signal`, waits (bounded) for the exit, and returns the exit
    /// status and every line printed on stdout.
    pub fn stop_with(mut self, signal: i32) -> (ExitStatus, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(sent, 0, "sending signal {signal}");
        let deadline = Instant::now() + STEP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for edgelab-serve") {
                break status;
            }
            assert!(Instant::now() < deadline, "edgelab-serve did not exit after signal {signal}");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.stdout_reader.take() {
            reader.join().expect("stdout reader");
        }
        let lines = self.stdout_lines.lock().unwrap().clone();
        (status, lines)
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens a connection with the step timeout on reads and writes.
pub fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, STEP_TIMEOUT).expect("connecting");
    stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream
}

/// Sends `request` bytes as they are on a new connection and reads one
/// response.
pub fn send_raw(address: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = connect(address);
    stream.write_all(request).expect("sending the request");
    read_response(&mut stream, false)
}

/// `GET path` on a new connection, the request line sent exactly as given.
pub fn get_raw(address: SocketAddr, raw_path: &str) -> RawResponse {
    let request = format!("GET {raw_path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    send_raw(address, request.as_bytes())
}

/// Reads one response from `stream`: headers, then a body of
/// `Content-Length` bytes (none for HEAD), or up to EOF without one.
pub fn read_response(stream: &mut TcpStream, is_head: bool) -> RawResponse {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n_read = stream.read(&mut byte).expect("reading the response head");
        assert!(n_read == 1, "connection closed in the response head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("the head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let content_length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| value.parse::<usize>().expect("numeric content-length"));
    let mut body = Vec::new();
    match (is_head, content_length) {
        (true, _) => {}
        (false, Some(length)) => {
            body.resize(length, 0);
            stream.read_exact(&mut body).expect("reading the body");
        }
        (false, None) => {
            stream.read_to_end(&mut body).expect("reading the body");
        }
    }
    RawResponse { status, headers, body }
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(header_name, _)| header_name == name).map(|(_, value)| value.as_str())
    }
}

/// Fails the test with an install hint unless `tool` runs.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(found, "`{tool}` not found: apt-get install {package} (Debian) or dnf install {package} (RHEL)");
}

/// Runs a tool to completion and fails the test, showing the command and its
/// stderr, if it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
