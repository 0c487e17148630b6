//! HTTP/1.1 to osbuild-composer over its unix socket, through hyper's client
//! connection (one request per connection, as composer-cli makes them). The
//! answer's head must come within the request's timeout and so must each
//! piece of its body; the body is read as it arrives (`Read`), so a large
//! image streams to disk without being held in memory.

use std::{io, path::Path, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::{
    HeaderMap, Request,
    body::{Bytes, Incoming},
};
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

/// Why a request failed, for the callers that branch on it.
#[derive(Debug)]
pub(super) enum RequestError {
    /// No answer within the timeout: worth retrying.
    TimedOut(String),
    /// Anything else, already explained.
    Failed(anyhow::Error),
}

/// An HTTP answer whose body is still on the socket.
pub(super) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: BodyReader,
}

impl Response {
    /// A header's value as text, when present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// `method path` on `socket` with an optional `(content type, bytes)` body.
pub(super) fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    within: Duration,
) -> Result<Response, RequestError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| RequestError::Failed(anyhow::Error::new(err).context("starting the HTTP client")))?;
    let failed =
        |err: hyper::Error| RequestError::Failed(anyhow::anyhow!("{method} {path} on {}: {err}", socket.display()));
    let mut builder =
        Request::builder().method(method).uri(path).header("host", "localhost").header("connection", "close");
    builder = builder.header("accept", "*/*");
    if let Some((content_type, _)) = body {
        builder = builder.header("content-type", content_type);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body.map_or(&[][..], |(_, bytes)| bytes))))
        .map_err(|err| RequestError::Failed(anyhow::anyhow!("{method} {path}: {err}")))?;
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|err| RequestError::Failed(super::reply::connect_error(socket, err)))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(failed)?;
        // Driven whenever this runtime runs: now, and while the body is read.
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(failed)
    };
    let answer = runtime
        .block_on(async { tokio::time::timeout(within, exchange).await })
        .map_err(|_| RequestError::TimedOut(format!("no answer to {method} {path} within {within:?}")))??;
    let (head, incoming) = answer.into_parts();
    let what = format!("{method} {path}");
    Ok(Response {
        status: head.status.as_u16(),
        headers: head.headers,
        body: BodyReader { runtime, incoming, pending: Bytes::new(), within, what },
    })
}

/// An answer's body as `Read`: each piece waited for on the request's own
/// runtime, at most `within`.
pub(super) struct BodyReader {
    runtime: Runtime,
    incoming: Incoming,
    pending: Bytes,
    within: Duration,
    what: String,
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let frame = self
                .runtime
                .block_on(async { tokio::time::timeout(self.within, self.incoming.frame()).await })
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the answer to {} stalled for {:?}", self.what, self.within),
                    )
                })?;
            match frame {
                None => return Ok(0),
                Some(Err(err)) => return Err(io::Error::other(format!("reading the answer to {}: {err}", self.what))),
                // Trailers carry no body bytes.
                Some(Ok(frame)) => self.pending = frame.into_data().unwrap_or_default(),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}
