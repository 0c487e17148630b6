//! The counting file server: serves one directory read-only over HTTP/1.1
//! and counts every request and every body byte, per client IP address.
//!
//! It replaces the demo's small Go server (`http.FileServer` plus a log line
//! per request), keeping its log format and adding what a lab needs: the
//! counts as JSON at `/.edgelab/counters`, a summary at shutdown, and limits
//! so a hostile or broken client can neither read outside the root nor tie
//! up every file descriptor. OSTree fetches one file per object, so the hot
//! path is built for many small requests on kept-alive connections.
//!
//! `Server::bind` checks the root and takes the port; `Server::run` serves
//! until the `shutdown` future resolves and returns the `Summary`.

mod body;
mod content_type;
mod counters;
mod handler;
mod range;
mod request_log;
mod resolve;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use content_type::{DEFAULT_CONTENT_TYPE, content_type_for};
pub use counters::{BYTES_PER_MB, ClientTotals, CountersSnapshot, Summary};
pub use handler::COUNTERS_PATH;
pub use range::{ByteRange, Selection, parse_range, select};
pub use resolve::{Reject, resolve_path};

use counters::Counters;
use request_log::RequestLog;
use resolve::RootDir;

/// The largest `max_connections` accepted; far above what file descriptors
/// allow, and small enough to count permits in a `u32`.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

/// Connections the kernel may queue before we accept them. Tokio's default
/// of 128 overflows when many clients connect at once (a burst of OSTree
/// fetches, or a flood that we are about to refuse), and an overflowing
/// queue drops SYNs, which clients only retry after a second or more.
const LISTEN_BACKLOG: u32 = 1024;

/// How long open connections get to finish their current response once
/// shutdown has begun, before the server stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Sent to a connection refused because `max_connections` are open. It is
/// written without waiting (the socket buffer of a fresh connection is
/// empty), so refusing costs no task and no timer.
const REFUSAL_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\n\
Connection: close\r\nRetry-After: 1\r\n\r\ntoo many connections";

/// How the server is set up; the binary fills it from its flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory to serve.
    pub root: PathBuf,
    pub address: IpAddr,
    /// 0 picks a free port; `Server::local_addr` tells which.
    pub port: u16,
    /// No per-request lines (for benchmarks); the summary is still written.
    pub quiet: bool,
    /// Write request lines and the summary to this file instead of stdout.
    pub log: Option<PathBuf>,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A connection that moves no byte either way for this long is closed,
    /// whether it is new, between requests, or stalled mid-response.
    pub idle_timeout: Duration,
    /// A request's headers must arrive within this long of the server
    /// starting to wait for them (slow-loris protection).
    pub header_timeout: Duration,
}

/// Why the server could not start. Each message is whole, with the OS error
/// in it, so the binary prints it as it is.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("root {} cannot be served: {error}", root.display())]
    Root { root: PathBuf, error: io::Error },
    #[error("root {} is not a directory", root.display())]
    RootNotDirectory { root: PathBuf },
    #[error("port {port} on {address} is in use: {error}; stop it or set file-server port in lab.kdl")]
    PortInUse { address: IpAddr, port: u16, error: io::Error },
    #[error("cannot listen on {address} port {port}: {error}")]
    Listen { address: IpAddr, port: u16, error: io::Error },
    #[error("cannot open log file {}: {error}", path.display())]
    Log { path: PathBuf, error: io::Error },
    #[error("--max-connections must be between 1 and {MAX_CONNECTIONS_LIMIT}")]
    MaxConnections,
}

/// A bound server, ready to `run`.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    max_connections: usize,
}

/// What every connection and request of one server shares.
pub(crate) struct Shared {
    /// The canonical root, open for confined opens.
    pub(crate) root: RootDir,
    pub(crate) counters: Counters,
    pub(crate) log: RequestLog,
    http: http1::Builder,
    idle_timeout: Duration,
    /// The zero point of the per-connection activity clocks.
    epoch: Instant,
}

/// When a connection last moved a byte, in milliseconds since `Shared::epoch`.
struct Activity {
    last_active_ms: AtomicU64,
}

/// A TCP stream that records when it last read or wrote a byte, for the idle
/// timeout.
struct WatchedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
    epoch: Instant,
}

/// Binds and runs a server until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<Summary, StartError> {
    let server = Server::bind(config).await?;
    Ok(server.run(shutdown).await)
}

/// Raises the soft limit on open files to the hard limit, so that
/// `max_connections` is the limit that bites, and returns the new soft limit.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the
        // hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

impl Server {
    /// Checks the root, opens the log and binds the listening socket.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&config.max_connections) {
            return Err(StartError::MaxConnections);
        }
        let root = std::fs::canonicalize(&config.root)
            .map_err(|error| StartError::Root { root: config.root.clone(), error })?;
        if !root.is_dir() {
            return Err(StartError::RootNotDirectory { root: config.root });
        }
        let listener = listen(config.address, config.port).map_err(|error| bind_error(&config, error))?;
        let local_addr = listener.local_addr().map_err(|error| bind_error(&config, error))?;
        let log = RequestLog::open(config.quiet, config.log.as_deref())
            .map_err(|error| StartError::Log { path: config.log.clone().unwrap_or_default(), error })?;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).keep_alive(true);
        let shared = Shared {
            root: RootDir::open(root),
            counters: Counters::new(),
            log,
            http,
            idle_timeout: config.idle_timeout,
            epoch: Instant::now(),
        };
        Ok(Server { listener, local_addr, shared: Arc::new(shared), max_connections: config.max_connections })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The canonical root being served.
    pub fn root(&self) -> &Path {
        &self.shared.root.path
    }

    /// The counters as they are now.
    pub fn counters(&self) -> CountersSnapshot {
        self.shared.counters.snapshot()
    }

    /// Serves until `shutdown` resolves, then lets open connections finish
    /// their current response (for at most `SHUTDOWN_GRACE`) and returns the
    /// summary, which is also appended to the log file if there is one.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Summary {
        let connection_permits = Arc::new(Semaphore::new(self.max_connections));
        let stop_connections = CancellationToken::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    wait_after_accept_error(&error).await;
                    continue;
                }
            };
            let Ok(permit) = connection_permits.clone().try_acquire_owned() else {
                self.refuse(stream, peer);
                continue;
            };
            let shared = self.shared.clone();
            let stop_connection = stop_connections.clone();
            tokio::spawn(async move {
                serve_connection(shared, stream, peer, stop_connection).await;
                drop(permit);
            });
        }
        drop(self.listener);
        stop_connections.cancel();
        // Every connection holds a permit until it ends, so having them all
        // back means every connection has finished.
        let all_permits = self.max_connections as u32; // At most MAX_CONNECTIONS_LIMIT.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection_permits.acquire_many(all_permits)).await;
        let summary = self.shared.counters.summary();
        self.shared.log.write_summary(&summary);
        summary
    }

    fn refuse(&self, stream: TcpStream, peer: SocketAddr) {
        self.shared.counters.count_refused_connection();
        let _ = stream.try_write(REFUSAL_RESPONSE);
        self.shared.log.write_request_line(format_args!(
            "refused connection from {peer}: {} connections open (--max-connections)",
            self.max_connections
        ));
    }
}

/// Serves one connection until the client closes it, it idles out, or the
/// server shuts down.
async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop_connection: CancellationToken,
) {
    // Responses are written whole by hyper; Nagle would only delay the last
    // segment of each one.
    let _ = stream.set_nodelay(true);
    let client = shared.counters.client(peer.ip());
    // Formatted once here rather than in every request's log line.
    let peer: Arc<str> = peer.to_string().into();
    let activity = Arc::new(Activity { last_active_ms: AtomicU64::new(millis_since(shared.epoch)) });
    let watched = WatchedStream { stream, activity: activity.clone(), epoch: shared.epoch };
    let service_shared = shared.clone();
    let service = service_fn(move |request| {
        let response = handler::handle(service_shared.clone(), client.clone(), peer.clone(), request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let connection = shared.http.serve_connection(TokioIo::new(watched), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let idle_deadline =
            shared.epoch + Duration::from_millis(activity.last_active_ms.load(Ordering::Relaxed)) + shared.idle_timeout;
        tokio::select! {
            // Errors here are the client's doing (a reset, a malformed
            // request that hyper already answered); there is nobody to tell.
            _ = connection.as_mut() => return,
            () = stop_connection.cancelled(), if !stopping => {
                connection.as_mut().graceful_shutdown();
                stopping = true;
            }
            () = tokio::time::sleep_until(idle_deadline.into()) => {
                let last_active_ms = activity.last_active_ms.load(Ordering::Relaxed);
                let idle_for_ms = millis_since(shared.epoch).saturating_sub(last_active_ms);
                if Duration::from_millis(idle_for_ms) >= shared.idle_timeout {
                    return;
                }
            }
        }
    }
}

/// Accept fails mostly for lack of file descriptors; waiting a little lets
/// connections close instead of spinning on the error.
async fn wait_after_accept_error(error: &io::Error) {
    eprintln!("edgelab-serve: accepting a connection: {error}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Binds and listens with `LISTEN_BACKLOG`; `SO_REUSEADDR` lets a restarted
/// server take the port back while old connections sit in TIME_WAIT.
fn listen(address: IpAddr, port: u16) -> io::Result<TcpListener> {
    let socket = match address {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(address, port))?;
    socket.listen(LISTEN_BACKLOG)
}

fn bind_error(config: &Config, error: io::Error) -> StartError {
    match error.kind() {
        io::ErrorKind::AddrInUse => StartError::PortInUse { address: config.address, port: config.port, error },
        _ => StartError::Listen { address: config.address, port: config.port, error },
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl WatchedStream {
    fn touch(&self) {
        self.activity.last_active_ms.store(millis_since(self.epoch), Ordering::Relaxed);
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let filled_before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && buf.filled().len() > filled_before
        {
            self.touch();
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n_written)) = result
            && n_written > 0
        {
            self.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n_written)) = result
            && n_written > 0
        {
            self.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
