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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Method, StatusCode};
use tokio::io::Take;

use crate::Shared;
use crate::counters::ClientCounters;

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
    /// The client's address, formatted once per connection.
    pub(crate) peer: Arc<str>,
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
        let total_bytes = tally.shared.counters.bytes_sent();
        let remaining = self.remaining;
        // Written by hand rather than through `format_args!`: the formatting
        // machinery (padding, `Display` for the address and the status) was
        // most of a logged request's cost beyond hyper's own.
        log.write_request_line_with(|line| {
            push_padded(line, exchange.request_number, 5);
            line.push_str("  ");
            push_megabytes(line, total_bytes);
            line.push_str(" MB  ");
            line.push_str(&exchange.peer);
            line.push_str("  ");
            push_padded(line, u64::from(exchange.status.as_u16()), 0);
            line.push_str("  ");
            line.push_str(exchange.method.as_str());
            line.push(' ');
            line.push_str(&exchange.path);
            if let Some(reason) = exchange.reject_reason {
                line.push_str("  rejected: ");
                line.push_str(reason);
            }
            if remaining != 0 {
                line.push_str("  aborted after ");
                push_padded(line, exchange.bytes_sent, 0);
                line.push_str(" of ");
                push_padded(line, exchange.bytes_sent + remaining, 0);
                line.push_str(" bytes");
            }
        });
    }
}

/// `number` in decimal, right-aligned in `width` characters as `{:width$}`.
fn push_padded(line: &mut String, mut number: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    let n_digits = digits.len() - first;
    for _ in n_digits..width {
        line.push(' ');
    }
    // Only ASCII digits were written.
    line.push_str(std::str::from_utf8(&digits[first..]).unwrap_or_default());
}

/// Bytes as megabytes with three decimals, padded to seven characters as
/// `{:7.3}` of an `f64` would be, but in integers: the float formatting
/// (grisu) was a tenth of a logged request's instructions.
fn push_megabytes(line: &mut String, bytes: u64) {
    let thousandths = bytes.saturating_add(500) / 1000;
    push_padded(line, thousandths / 1000, 3);
    line.push('.');
    let fraction = thousandths % 1000;
    line.push(char::from(b'0' + (fraction / 100) as u8));
    line.push(char::from(b'0' + (fraction / 10 % 10) as u8));
    line.push(char::from(b'0' + (fraction % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabytes_print_as_the_float_did() {
        for bytes in [0, 1, 499, 500, 18_004, 999_999, 1_000_000, 214_875_000, 1_234_567_890] {
            let float = format!("{:7.3}", bytes as f64 / crate::counters::BYTES_PER_MB);
            let mut line = String::new();
            push_megabytes(&mut line, bytes);
            assert_eq!(line, float, "{bytes} bytes");
        }
    }

    #[test]
    fn numbers_pad_as_format_does() {
        for (number, width) in [(0, 5), (7, 5), (12345, 5), (123456, 5), (200, 0), (u64::MAX, 3)] {
            let mut line = String::new();
            push_padded(&mut line, number, width);
            assert_eq!(line, format!("{number:width$}"));
        }
    }
}
