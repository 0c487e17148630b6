//! `httpd`: the demo app's static web server, std only.
//!
//! It serves one folder (default `/var/www/html`, `index.html` for `/`) over
//! HTTP/1.0-style connections: one request per connection, one thread per
//! connection. The container runs it as PID 1 named `httpd`, so the demo's
//! `pkill -9 httpd` kills it and the exit (by SIGKILL) counts as a failure for
//! `Restart=on-failure`. SIGTERM (`podman stop`) is a clean stop: exit 0. A
//! PID 1 ignores signals it has no handler for, hence the explicit handler.
//!
//! Usage: `httpd [--address ADDR] [--port PORT] [--root DIR]`; the port may
//! also come from `HTTPD_PORT`. Defaults: 0.0.0.0, 80, /var/www/html.
//!
//! Socket activation: when systemd passed one listening socket
//! (`LISTEN_FDS=1` and `LISTEN_PID` this process, as podman sets them for a
//! container's PID 1), httpd serves on that socket (fd 3) and ignores
//! `--address` and `--port`. The guest's unit runs the container so: the
//! first request on the VIP starts it, and the container needs no network
//! of its own (`--network=none`), so nothing forwards its connections.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    os::fd::{FromRawFd, RawFd},
    path::{Component, Path, PathBuf},
    time::Duration,
};

struct Config {
    address: String,
    port: u16,
    root: PathBuf,
}

fn main() {
    let config = match parse_args(std::env::args().skip(1).collect(), std::env::var("HTTPD_PORT").ok()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("httpd: {message}");
            eprintln!("usage: httpd [--address ADDR] [--port PORT] [--root DIR]");
            std::process::exit(2);
        }
    };
    exit_cleanly_on_sigterm();
    let listen_fds = std::env::var("LISTEN_FDS").ok();
    let listen_pid = std::env::var("LISTEN_PID").ok();
    let listener = match activated_socket(listen_fds.as_deref(), listen_pid.as_deref(), std::process::id()) {
        Ok(Some(fd)) => {
            // SAFETY: systemd (through podman) passed this fd open, and
            // nothing else in this process owns it.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            // A wrong fd 3 (another kind of socket) must end the container, so
            // that systemd starts it again, not leave the VIP's connections
            // queued while accept fails forever.
            match listener.local_addr() {
                Ok(addr) => {
                    eprintln!("httpd: serving {} on the socket systemd passed (fd {fd}, {addr})", config.root.display())
                }
                Err(err) => {
                    eprintln!("httpd: fd {fd} (LISTEN_FDS) is not a TCP socket: {err}");
                    std::process::exit(1);
                }
            }
            listener
        }
        Ok(None) => match TcpListener::bind((config.address.as_str(), config.port)) {
            Ok(listener) => {
                eprintln!("httpd: serving {} on {}:{}", config.root.display(), config.address, config.port);
                listener
            }
            Err(err) => {
                eprintln!("httpd: cannot listen on {}:{}: {err}", config.address, config.port);
                std::process::exit(1);
            }
        },
        Err(message) => {
            eprintln!("httpd: {message}");
            std::process::exit(2);
        }
    };
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            // Not listening (or not a socket): no later accept succeeds.
            Err(err) if matches!(err.raw_os_error(), Some(EINVAL | ENOTSOCK | EBADF)) => {
                eprintln!("httpd: cannot accept connections: {err}");
                std::process::exit(1);
            }
            Err(_) => continue,
        };
        let root = config.root.clone();
        std::thread::spawn(move || serve(stream, &root));
    }
}

fn parse_args(args: Vec<String>, env_port: Option<String>) -> Result<Config, String> {
    let mut config = Config { address: "0.0.0.0".into(), port: 80, root: PathBuf::from("/var/www/html") };
    if let Some(port) = env_port {
        config.port = port.parse().map_err(|_| format!("HTTPD_PORT `{port}` is not a port number"))?;
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--address" => config.address = value()?,
            "--port" => {
                let port = value()?;
                config.port = port.parse().map_err(|_| format!("--port `{port}` is not a port number"))?;
            }
            "--root" => config.root = PathBuf::from(value()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(config)
}

/// The first fd of systemd's socket-activation protocol.
const SD_LISTEN_FDS_START: RawFd = 3;

/// The listening socket systemd passed, from `LISTEN_FDS` and `LISTEN_PID`
/// (sd_listen_fds(3)): `None` when none was passed to this process, an error
/// when more than the one socket httpd can serve was.
fn activated_socket(fds: Option<&str>, pid: Option<&str>, own_pid: u32) -> Result<Option<RawFd>, String> {
    let (Some(fds), Some(pid)) = (fds, pid) else { return Ok(None) };
    if pid.parse::<u32>().ok() != Some(own_pid) {
        return Ok(None);
    }
    match fds.parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(1) => Ok(Some(SD_LISTEN_FDS_START)),
        Ok(n) => Err(format!("systemd passed {n} sockets (LISTEN_FDS={n}); httpd serves one")),
        Err(_) => Err(format!("LISTEN_FDS `{fds}` is not a number")),
    }
}

fn serve(mut stream: TcpStream, root: &Path) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(clone) => clone,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers; nothing in them changes the answer.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header.trim_end() != "" {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = match method {
        "GET" | "HEAD" => match resolve(root, target) {
            Some(path) => match std::fs::read(&path) {
                Ok(body) => Response { status: "200 OK", content_type: content_type(&path), body },
                Err(_) => Response::text("404 Not Found", "not found\n"),
            },
            None => Response::text("404 Not Found", "not found\n"),
        },
        _ => Response::text("405 Method Not Allowed", "method not allowed\n"),
    };
    let head = format!(
        "HTTP/1.1 {}\r\nServer: httpd\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(&response.body);
    }
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.as_bytes().to_vec() }
    }
}

/// The file under `root` a request target names; `None` for anything that
/// would leave `root` (`..`) or is not a plain file.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let relative = path.strip_prefix('/')?;
    let mut resolved = root.to_path_buf();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if resolved.is_dir() {
        resolved.push("index.html");
    }
    resolved.is_file().then_some(resolved)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    }
}

const SIGTERM: i32 = 15;
// Linux's errno values for the accept errors no retry cures.
const EBADF: i32 = 9;
const EINVAL: i32 = 22;
const ENOTSOCK: i32 = 88;

unsafe extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(status: i32) -> !;
}

extern "C" fn on_sigterm(_signum: i32) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

fn exit_cleanly_on_sigterm() {
    // SAFETY: installs an async-signal-safe handler; `signal` is in every libc.
    unsafe {
        signal(SIGTERM, on_sigterm as extern "C" fn(i32) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_under_root() {
        let root = std::env::temp_dir().join(format!("httpd-test-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        assert_eq!(resolve(&root, "/"), Some(root.join("index.html")));
        assert_eq!(resolve(&root, "/index.html?x=1"), Some(root.join("index.html")));
        assert_eq!(resolve(&root, "/../etc/passwd"), None);
        assert_eq!(resolve(&root, "/sub"), None);
        assert_eq!(resolve(&root, "relative"), None);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn a_socket_passed_to_this_process_is_fd_3() {
        assert_eq!(activated_socket(Some("1"), Some("1"), 1), Ok(Some(3)));
        assert_eq!(activated_socket(Some("1"), Some("42"), 1), Ok(None), "passed to another process");
        assert_eq!(activated_socket(None, None, 1), Ok(None));
        assert_eq!(activated_socket(Some("0"), Some("1"), 1), Ok(None));
        assert!(activated_socket(Some("2"), Some("1"), 1).unwrap_err().contains("2 sockets"));
        assert!(activated_socket(Some("x"), Some("1"), 1).is_err());
    }

    #[test]
    fn args_and_env_port() {
        let config = parse_args(vec![], Some("8080".into())).unwrap();
        assert_eq!(config.port, 8080);
        let config = parse_args(vec!["--port".into(), "81".into(), "--root".into(), "/srv".into()], None).unwrap();
        assert_eq!((config.port, config.root), (81, PathBuf::from("/srv")));
        assert!(parse_args(vec!["--bogus".into()], None).is_err());
    }
}
