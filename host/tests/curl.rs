//! Ranges and HEAD as curl asks for them: status, headers and body bytes,
//! and what the counters make of each.

// These tests drive real programs (the server binary, curl); the rule that
// only xtask's tools/ starts processes is about xtask.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use support::{ServeProcess, require_tool};

/// What curl saw: the status, the headers (lower-case names) and the body.
struct CurlResponse {
    status: u16,
    /// The header block as received; with `-I`, curl writes it to the
    /// output file too, so a HEAD's "body" is exactly this.
    header_text: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

const FILE_BYTES: usize = 100_000;

#[test]
fn ranges_and_head_through_curl() {
    require_tool("curl", "curl");
    let root = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..FILE_BYTES).map(|idx| (idx * 31 % 251) as u8).collect();
    std::fs::write(root.path().join("image.iso"), &content).unwrap();
    std::fs::write(root.path().join("small.txt"), "0123456789").unwrap();
    let server = ServeProcess::start(root.path(), &["--quiet"]);
    let mut expected_bytes = 0u64;

    // Whole file: 200, type by extension, the large file streamed.
    let whole = curl(root.path(), &[&server.url("/image.iso")]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.headers["content-type"], "application/x-iso9660-image");
    assert_eq!(whole.headers["content-length"], FILE_BYTES.to_string());
    assert_eq!(whole.headers["accept-ranges"], "bytes");
    assert!(whole.body == content, "whole body differs");
    expected_bytes += FILE_BYTES as u64;

    // First 100 bytes.
    let first = curl(root.path(), &["-r", "0-99", &server.url("/image.iso")]);
    assert_eq!(first.status, 206);
    assert_eq!(first.headers["content-range"], format!("bytes 0-99/{FILE_BYTES}"));
    assert_eq!(first.headers["content-length"], "100");
    assert_eq!(first.body, content[..100]);
    expected_bytes += 100;

    // A range in the middle, past the small-file threshold so it streams.
    let middle = curl(root.path(), &["-r", "1000-89999", &server.url("/image.iso")]);
    assert_eq!(middle.status, 206);
    assert_eq!(middle.headers["content-range"], format!("bytes 1000-89999/{FILE_BYTES}"));
    assert!(middle.body == content[1000..90000], "middle range differs");
    expected_bytes += 89_000;

    // Suffix range: the last 500 bytes.
    let suffix = curl(root.path(), &["-r", "-500", &server.url("/image.iso")]);
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.headers["content-range"], format!("bytes {}-{}/{FILE_BYTES}", FILE_BYTES - 500, FILE_BYTES - 1));
    assert_eq!(suffix.body, content[FILE_BYTES - 500..]);
    expected_bytes += 500;

    // Open-ended range, clipped to the end of the file.
    let tail = curl(root.path(), &["-r", "7-", &server.url("/small.txt")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.headers["content-range"], "bytes 7-9/10");
    assert_eq!(tail.body, b"789");
    expected_bytes += 3;

    // Unsatisfiable: starts past the end.
    let past_end = curl(root.path(), &["-r", "200000-200100", &server.url("/image.iso")]);
    assert_eq!(past_end.status, 416);
    assert_eq!(past_end.headers["content-range"], format!("bytes */{FILE_BYTES}"));
    assert!(past_end.body.is_empty());

    // Several ranges are not supported: the whole file, 200.
    let several = curl(root.path(), &["-r", "0-1,5-6", &server.url("/small.txt")]);
    assert_eq!(several.status, 200);
    assert_eq!(several.body, b"0123456789");
    expected_bytes += 10;

    // HEAD: the headers of a GET, no body, no bytes counted. The raw HTTP
    // tests check on the wire that nothing follows the headers.
    let head = curl(root.path(), &["-I", &server.url("/image.iso")]);
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], FILE_BYTES.to_string());
    assert_eq!(head.headers["content-type"], "application/x-iso9660-image");
    assert_eq!(head.body, head.header_text.as_bytes(), "HEAD sent body bytes");
    let head_text = curl(root.path(), &["-I", &server.url("/small.txt")]);
    assert_eq!(head_text.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(head_text.headers["content-length"], "10");

    // HEAD of a missing file: 404 without a body.
    let head_missing = curl(root.path(), &["-I", &server.url("/missing.iso")]);
    assert_eq!(head_missing.status, 404);
    assert_eq!(head_missing.body, head_missing.header_text.as_bytes());

    let counters = server.counters();
    assert_eq!(counters["requests"], 10, "{counters}");
    assert_eq!(counters["bytes_sent"], expected_bytes, "{counters}");
}

/// Runs curl with `args`, keeping the headers and the body apart.
fn curl(scratch: &Path, args: &[&str]) -> CurlResponse {
    let headers_path = scratch.join("curl-headers");
    let body_path = scratch.join("curl-body");
    let _ = std::fs::remove_file(&body_path);
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .arg("--dump-header")
        .arg(&headers_path)
        .arg("--output")
        .arg(&body_path)
        .args(args)
        .output()
        .expect("running curl");
    assert!(output.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    let header_text = std::fs::read_to_string(&headers_path).unwrap();
    let mut lines = header_text.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|status| status.parse().ok());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    CurlResponse {
        header_text: header_text.clone(),
        status: status.unwrap_or_else(|| panic!("bad status line {status_line:?}")),
        headers,
        body: std::fs::read(&body_path).unwrap_or_default(),
    }
}
