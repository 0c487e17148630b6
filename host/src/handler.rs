//! Answering one request: the counters path, method checks, path resolution,
//! opening the file and building the response with its headers.
//!
//! The file-system work of a request (canonicalize, open, stat and, for a
//! small file, one `pread`) runs right on the async worker, not in
//! `spawn_blocking`. It is bounded: a handful of metadata calls and at most
//! `SMALL_FILE_BYTES` read, nearly always from the page cache since the lab
//! has just written the repository, and `O_NONBLOCK` keeps a FIFO from
//! blocking the open. OSTree fetches thousands of objects of a few kilobytes
//! each, and skipping the hop to the blocking pool measured 20,400 against
//! 15,900 requests/s (`wrk -t2 -c32` on a 2 KB file, 2 cores). Large files
//! stream in chunks through `tokio::fs`, whose reads do use the blocking pool.

use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, IF_RANGE, RANGE,
};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::AsyncReadExt;

use crate::Shared;
use crate::body::{Content, Exchange, ResponseBody, Tally};
use crate::content_type::content_type_for_name;
use crate::counters::ClientCounters;
use crate::range::{ByteRange, Selection, parse_range, select};
use crate::resolve::{OpenFailure, Reject, RootDir, open_confined, resolve_relative};

/// The reserved path that serves the counters as JSON instead of a file.
pub const COUNTERS_PATH: &str = "/.edgelab/counters";

/// Everything under this prefix belongs to the server, never to the root.
const RESERVED_PREFIX: &str = "/.edgelab/";

/// Files (or ranges) up to this size are read in one `pread` right after the
/// open and sent as one chunk. Streaming them would cost a trip to the
/// blocking pool per chunk for no memory saved worth having; OSTree objects
/// are mostly below this size.
const SMALL_FILE_BYTES: u64 = 64 * 1024;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// What `open_and_load` found and loaded.
struct Opened {
    file_len: u64,
    selection: Selection,
    loaded: Loaded,
}

enum Loaded {
    /// HEAD, an empty selection or an unsatisfiable range.
    Nothing,
    Bytes(Bytes),
    /// A large file, positioned at the first byte to send.
    File(std::fs::File),
}

/// Builds the response to one counted request, carrying what the log needs.
struct Reply {
    shared: Arc<Shared>,
    client: Arc<ClientCounters>,
    exchange: Exchange,
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    client: Arc<ClientCounters>,
    peer: Arc<str>,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let raw_path = request.uri().path();
    if raw_path == COUNTERS_PATH {
        return counters_response(&shared, request.method());
    }
    let request_number = shared.counters.count_request(&client);
    let path_for_log = match shared.log.wants_request_lines() {
        true => raw_path.to_owned(),
        false => String::new(),
    };
    let exchange = Exchange {
        request_number,
        peer,
        method: request.method().clone(),
        path: path_for_log,
        status: StatusCode::OK,
        reject_reason: None,
        bytes_sent: 0,
    };
    let reply = Reply { shared, client, exchange };
    let is_head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return reply.method_not_allowed(),
    };
    if raw_path.starts_with(RESERVED_PREFIX) {
        return reply.error(StatusCode::NOT_FOUND);
    }
    let relative = match resolve_relative(raw_path) {
        Ok(relative) => relative,
        Err(reject) => return reply.rejected(reject),
    };
    let range = requested_range(&request, is_head);
    let content_type = content_type_for_name(&relative);

    match open_and_load(&reply.shared.root, relative, range, is_head) {
        Ok(opened) => reply.file(opened, content_type, is_head),
        Err(OpenFailure::Rejected(reject)) => reply.rejected(reject),
        Err(OpenFailure::NotFound) => reply.error(StatusCode::NOT_FOUND),
        Err(OpenFailure::Forbidden) => reply.error(StatusCode::FORBIDDEN),
        Err(OpenFailure::Io(error)) => {
            eprintln!("edgelab-serve: reading {raw_path}: {error}");
            reply.error(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// The range to honour: none for HEAD, and none when `If-Range` is sent,
/// because without validators (ETag, Last-Modified) it can never match.
fn requested_range(request: &Request<Incoming>, is_head: bool) -> Option<ByteRange> {
    if is_head || request.headers().contains_key(IF_RANGE) {
        return None;
    }
    let header_value = request.headers().get(RANGE)?.to_str().ok()?;
    parse_range(header_value)
}

/// Opens the file and loads it if it is small; see the module comment.
fn open_and_load(
    root: &RootDir,
    relative: String,
    range: Option<ByteRange>,
    is_head: bool,
) -> Result<Opened, OpenFailure> {
    let (mut file, metadata) = open_confined(root, relative)?;
    let file_len = metadata.len();
    let selection = select(range, file_len);
    let (first, length) = match selection {
        Selection::Whole => (0, file_len),
        Selection::Partial { first, last } => (first, last - first + 1),
        Selection::Unsatisfiable => (0, 0),
    };
    let loaded = if is_head || length == 0 {
        Loaded::Nothing
    } else if length <= SMALL_FILE_BYTES {
        Loaded::Bytes(read_at(&file, first, length as usize).map_err(OpenFailure::Io)?)
    } else {
        file.seek(SeekFrom::Start(first)).map_err(OpenFailure::Io)?;
        Loaded::File(file)
    };
    Ok(Opened { file_len, selection, loaded })
}

/// Reads `length` bytes at `offset` into a fresh buffer that is never
/// zeroed first: `vec![0; n]` then `read_exact_at` spent more instructions
/// clearing the buffer (calloc's memset) than the rest of the request's
/// user-space work on a 16 KB object.
fn read_at(file: &std::fs::File, offset: u64, length: usize) -> std::io::Result<Bytes> {
    let mut buffer: Vec<u8> = Vec::with_capacity(length);
    while buffer.len() < length {
        let filled = buffer.len();
        let spare = &mut buffer.spare_capacity_mut()[..length - filled];
        // SAFETY: `spare` is writable memory of `spare.len()` bytes that
        // outlives the call; pread writes at most that many.
        let n_read = unsafe {
            libc::pread(
                std::os::fd::AsRawFd::as_raw_fd(file),
                spare.as_mut_ptr().cast(),
                spare.len(),
                (offset + filled as u64) as libc::off_t,
            )
        };
        match n_read {
            n if n > 0 => {
                // SAFETY: pread initialised the first `n` bytes of the spare
                // capacity, and `n <= spare.len()`.
                unsafe { buffer.set_len(filled + n as usize) }
            }
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank while it was read")),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(Bytes::from(buffer))
}

fn counters_response(shared: &Shared, method: &Method) -> Response<ResponseBody> {
    let is_head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = Response::new(ResponseBody::empty_uncounted());
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            let headers = response.headers_mut();
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            return response;
        }
    };
    let snapshot = shared.counters.snapshot();
    // Serializing plain numbers and strings cannot fail; an empty object is
    // still valid JSON should it ever do so.
    let mut json = serde_json::to_vec(&snapshot).unwrap_or_else(|_| b"{}".to_vec());
    json.push(b'\n');
    let length = json.len();
    let body = match is_head {
        true => ResponseBody::empty_uncounted(),
        false => ResponseBody::uncounted(Bytes::from(json)),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

impl Reply {
    fn file(mut self, opened: Opened, content_type: &'static str, is_head: bool) -> Response<ResponseBody> {
        let file_len = opened.file_len;
        let (status, length, content_range) = match opened.selection {
            Selection::Whole => (StatusCode::OK, file_len, None),
            Selection::Partial { first, last } => {
                (StatusCode::PARTIAL_CONTENT, last - first + 1, Some(format!("bytes {first}-{last}/{file_len}")))
            }
            Selection::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, 0, Some(format!("bytes */{file_len}"))),
        };
        let content = match opened.loaded {
            Loaded::Nothing => Content::Empty,
            Loaded::Bytes(bytes) => Content::Bytes(bytes),
            Loaded::File(file) => Content::file(tokio::fs::File::from_std(file).take(length)),
        };
        let body_length = match is_head {
            true => 0,
            false => length,
        };
        self.exchange.status = status;
        let mut response = Response::new(self.into_body(content, body_length));
        *response.status_mut() = status;
        // Sized once for what goes in, instead of growing on the first
        // inserts: two allocations fewer per request.
        *response.headers_mut() = HeaderMap::with_capacity(4);
        let headers = response.headers_mut();
        if status != StatusCode::RANGE_NOT_SATISFIABLE {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        // hyper writes Content-Length itself from the body's exact size
        // (straight into its buffer, no header value to allocate); a HEAD
        // body is empty, so there it must be given.
        if is_head {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        if let Some(content_range) = content_range {
            // Digits, spaces, `-`, `/` and `*` only: always a valid value.
            if let Ok(value) = HeaderValue::from_str(&content_range) {
                headers.insert(CONTENT_RANGE, value);
            }
        }
        response
    }

    fn rejected(mut self, reject: Reject) -> Response<ResponseBody> {
        self.shared.counters.count_rejected();
        self.exchange.reject_reason = Some(reject.reason());
        self.error(reject.status())
    }

    fn method_not_allowed(self) -> Response<ResponseBody> {
        let mut response = self.error(StatusCode::METHOD_NOT_ALLOWED);
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        response
    }

    /// A short plain-text error; its body counts as bytes sent like any other.
    fn error(mut self, status: StatusCode) -> Response<ResponseBody> {
        let text = error_text(status);
        let is_head = self.exchange.method == Method::HEAD;
        let (content, body_length) = match is_head {
            true => (Content::Empty, 0),
            false => (Content::Bytes(Bytes::from_static(text.as_bytes())), text.len() as u64),
        };
        self.exchange.status = status;
        let mut response = Response::new(self.into_body(content, body_length));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
        response
    }

    fn into_body(self, content: Content, body_length: u64) -> ResponseBody {
        let tally = Tally { shared: self.shared, client: self.client, exchange: self.exchange };
        ResponseBody::counted(content, body_length, tally)
    }
}

fn error_text(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad request\n",
        StatusCode::FORBIDDEN => "forbidden\n",
        StatusCode::NOT_FOUND => "not found\n",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed: use GET or HEAD\n",
        _ => "internal server error\n",
    }
}
