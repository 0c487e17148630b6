//! The lab's check channel into a local guest: a root shell the guest runs
//! on its virtio serial port `edgelab.shell` (guest/local/units/
//! edgelab-shell.service), which qemu exposes as a unix socket in the
//! guest's run state. Nothing of it is on the network and no key exists.
//!
//! Protocol: connect, send `echo READY` until the shell answers (it is
//! restarted within a second after each disconnect), then send the command
//! followed by an echo of its exit status between unique markers.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::store::Store;

/// The socket's file name in the guest's run folder.
pub const SOCKET: &str = "shell.sock";

/// What a command printed (stdout and stderr together) and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub text: String,
}

/// Runs `command` (a shell command line) as root in guest `name`, waiting
/// at most `timeout` for the shell and the command together.
pub fn run(store: &Store, name: &str, command: &str, timeout: Duration) -> anyhow::Result<Output> {
    let dir = super::guest_dir(store, name)?;
    run_at(&dir.join(SOCKET), command, timeout).with_context(|| format!("running `{command}` in guest {name}"))
}

/// As `run`, on the socket at `socket`.
pub fn run_at(socket: &Path, command: &str, timeout: Duration) -> anyhow::Result<Output> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("the guest is not running (no shell socket at {})", socket.display()))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let nonce = format!("{}x{nanos:x}", std::process::id());
    let ready = format!("__EDGELAB_READY_{nonce}__");
    let mut seen = String::new();
    let mut asked = Instant::now() - Duration::from_secs(10);
    loop {
        if Instant::now() >= deadline {
            bail!("the guest's shell did not answer within {timeout:?} (is edgelab-shell.service running?)");
        }
        if asked.elapsed() >= Duration::from_millis(700) {
            stream.write_all(format!("echo {ready}\n").as_bytes()).context("writing to the guest shell")?;
            asked = Instant::now();
        }
        read_some(&mut stream, &mut seen, deadline)?;
        if seen.contains(&ready) {
            break;
        }
    }
    // Let the queued READY echoes drain before the command's own output.
    std::thread::sleep(Duration::from_millis(300));
    let mut drain = String::new();
    read_some(&mut stream, &mut drain, Instant::now() + Duration::from_millis(200))?;
    let done = format!("__EDGELAB_RC_{nonce}_");
    let line = format!("( {command}\n) </dev/null 2>&1; echo \"{done}$?__\"\n");
    stream.write_all(line.as_bytes()).context("writing to the guest shell")?;
    let mut output = String::new();
    loop {
        if let Some(at) = output.find(&done) {
            let rest = &output[at + done.len()..];
            if let Some(end) = rest.find("__") {
                let status = rest[..end].trim().parse().unwrap_or(-1);
                let text = output[..at].replace(&ready, "");
                return Ok(Output { status, text: text.trim_start_matches('\n').to_string() });
            }
        }
        if Instant::now() >= deadline {
            bail!("no answer within {timeout:?}; output so far: {}", output.trim());
        }
        read_some(&mut stream, &mut output, deadline)?;
    }
}

/// Reads what is there (up to 200 ms) into `into`.
fn read_some(stream: &mut UnixStream, into: &mut String, deadline: Instant) -> anyhow::Result<()> {
    let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
    stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
    let mut buf = [0u8; 8192];
    match stream.read(&mut buf) {
        Ok(0) => bail!("the guest shell closed the connection"),
        Ok(n) => {
            into.push_str(&String::from_utf8_lossy(&buf[..n]));
            Ok(())
        }
        Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(()),
        Err(err) => Err(err).context("reading from the guest shell"),
    }
}
