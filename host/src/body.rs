//! The response body: a file streamed in chunks, bytes already in memory, or
//! nothing, counted as it is handed to the connection.
//!
//! Bytes are counted when hyper takes a chunk to write it, so `bytes_sent`
//! sums what really went to the connection, not what `stat` said: a range
//! counts its length, HEAD counts nothing, and a client that hangs up midway
//! counts only what it was given (at most one chunk more than it read). The
//! request's log line is written when hyper drops the body, that is when the
//! response is finished or abandoned, so the line can say how much was sent.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Method, StatusCode};
use tokio::io::Take;

use crate::Shared;
use crate::counters::{BYTES_PER_MB, ClientCounters};

/// How much of a file is read per chunk when streaming.
const FILE_CHUNK_BYTES: u64 = 64 * 1024;

pub(crate) struct ResponseBody {
    content: Content,
    /// Bytes still to send; exact, so hyper can trust the size hint.
    remaining: u64,
    tally: Option<Tally>,
}

pub(crate) enum Content {
    Empty,
    Bytes(Bytes),
    File { file: Take<tokio::fs::File>, buffer: BytesMut },
}

/// Who to count a body's bytes for, and what to log when it is done.
pub(crate) struct Tally {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: Arc<ClientCounters>,
    pub(crate) exchange: Exchange,
}

/// One request and its answer, for the log line.
pub(crate) struct Exchange {
    pub(crate) request_number: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) method: Method,
    /// The raw request path; empty when per-request lines are off, to spare
    /// the allocation.
    pub(crate) path: String,
    pub(crate) status: StatusCode,
    /// Why the request was rejected, if it was.
    pub(crate) reject_reason: Option<&'static str>,
    pub(crate) bytes_sent: u64,
}

impl Content {
    pub(crate) fn file(file: Take<tokio::fs::File>) -> Content {
        Content::File { file, buffer: BytesMut::new() }
    }
}

impl ResponseBody {
    /// A body whose bytes are counted for `tally`. `length` must be the exact
    /// number of bytes `content` yields.
    pub(crate) fn counted(content: Content, length: u64, tally: Tally) -> ResponseBody {
        ResponseBody { content, remaining: length, tally: Some(tally) }
    }

    /// A body that is neither counted nor logged: the counters themselves.
    pub(crate) fn uncounted(bytes: Bytes) -> ResponseBody {
        ResponseBody { remaining: bytes.len() as u64, content: Content::Bytes(bytes), tally: None }
    }

    pub(crate) fn empty_uncounted() -> ResponseBody {
        ResponseBody { content: Content::Empty, remaining: 0, tally: None }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let chunk = match &mut this.content {
            Content::Empty => return Poll::Ready(None),
            Content::Bytes(bytes) => std::mem::take(bytes),
            Content::File { file, buffer } => {
                buffer.reserve(this.remaining.min(FILE_CHUNK_BYTES) as usize);
                let n_read = ready!(tokio_util::io::poll_read_buf(Pin::new(file), cx, buffer))?;
                if n_read == 0 {
                    // The file shrank after we promised its length. Failing the
                    // body makes hyper close the connection, so the client
                    // sees a short response rather than a wrong one.
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while it was being sent",
                    ))));
                }
                buffer.split().freeze()
            }
        };
        let n_bytes = chunk.len() as u64;
        this.remaining = this.remaining.saturating_sub(n_bytes);
        if let Some(tally) = &mut this.tally {
            tally.exchange.bytes_sent += n_bytes;
            tally.shared.counters.count_bytes(&tally.client, n_bytes);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let Some(tally) = &self.tally else {
            return;
        };
        let log = &tally.shared.log;
        if !log.wants_request_lines() {
            return;
        }
        let exchange = &tally.exchange;
        let megabytes = tally.shared.counters.bytes_sent() as f64 / BYTES_PER_MB;
        let reject_note = match exchange.reject_reason {
            Some(reason) => format!("  rejected: {reason}"),
            None => String::new(),
        };
        let abort_note = match self.remaining {
            0 => String::new(),
            remaining => {
                format!("  aborted after {} of {} bytes", exchange.bytes_sent, exchange.bytes_sent + remaining)
            }
        };
        log.write_request_line(format_args!(
            "{:5}  {:7.3} MB  {}  {}  {} {}{reject_note}{abort_note}",
            exchange.request_number,
            megabytes,
            exchange.peer,
            exchange.status.as_u16(),
            exchange.method,
            exchange.path,
        ));
    }
}
