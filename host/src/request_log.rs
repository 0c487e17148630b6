//! Where the per-request lines and the closing summary are written: stdout,
//! or the file given with `--log`.
//!
//! Request handlers format their line straight into a shared buffer under a
//! short lock; a writer thread takes the buffer every `FLUSH_INTERVAL` and
//! writes it in one `write`. A line therefore appears within a few tens of
//! milliseconds (still live for a person watching the counts), and a busy
//! server makes about 20 system calls a second for its log instead of one
//! per request and never waits on the disk while holding a request. This
//! halved the log's cost per request against waking a writer for each line.
//! Lines are whole and in the order requests finished. A write error (a
//! full disk, a closed pipe) does not stop the server: serving files
//! matters more than logging them.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::Summary;

/// How often the writer thread writes what has accumulated.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

pub(crate) struct RequestLog {
    /// `false` when `--quiet` turned the per-request lines off.
    wants_request_lines: bool,
    /// `None` when there is neither a request line nor a summary to write.
    shared: Option<Arc<Shared>>,
}

/// What handlers and the writer thread share.
struct Shared {
    /// Lines not yet written.
    pending: Mutex<String>,
    /// Held while writing, so the summary lands after the last lines.
    sink: Mutex<Sink>,
}

enum Sink {
    Stdout,
    File(File),
}

impl RequestLog {
    pub(crate) fn open(quiet: bool, log_path: Option<&Path>) -> io::Result<RequestLog> {
        let sink = match log_path {
            Some(log_path) => Some(Sink::File(OpenOptions::new().create(true).append(true).open(log_path)?)),
            None if quiet => None,
            None => Some(Sink::Stdout),
        };
        let shared = match sink {
            Some(sink) => {
                let shared = Arc::new(Shared { pending: Mutex::new(String::new()), sink: Mutex::new(sink) });
                if !quiet {
                    let writer_shared = shared.clone();
                    std::thread::Builder::new()
                        .name("edgelab-serve-log".into())
                        .spawn(move || write_periodically(&writer_shared))?;
                }
                Some(shared)
            }
            None => None,
        };
        Ok(RequestLog { wants_request_lines: !quiet, shared })
    }

    /// Whether per-request lines are wanted; callers skip formatting if not.
    pub(crate) fn wants_request_lines(&self) -> bool {
        self.wants_request_lines
    }

    /// Appends one request line, written by `write` straight into the
    /// pending buffer (the newline is added here).
    pub(crate) fn write_request_line_with(&self, write: impl FnOnce(&mut String)) {
        if let (true, Some(shared)) = (self.wants_request_lines, &self.shared) {
            let mut pending = lock(&shared.pending);
            write(&mut pending);
            pending.push('\n');
        }
    }

    pub(crate) fn write_request_line(&self, line: std::fmt::Arguments<'_>) {
        if let (true, Some(shared)) = (self.wants_request_lines, &self.shared) {
            let mut pending = lock(&shared.pending);
            let _ = pending.write_fmt(line);
            pending.push('\n');
        }
    }

    /// Writes every pending request line, then appends the summary to the
    /// log file, if there is one. The binary prints it on stdout itself.
    pub(crate) fn write_summary(&self, summary: &Summary) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut sink = lock(&shared.sink);
        write_pending(shared, &mut sink);
        if let Sink::File(file) = &mut *sink {
            let _ = write!(file, "{summary}");
        }
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            write_pending(shared, &mut lock(&shared.sink));
        }
    }
}

/// The writer thread; it ends once the log itself is gone.
fn write_periodically(shared: &Arc<Shared>) {
    while Arc::strong_count(shared) > 1 {
        std::thread::sleep(FLUSH_INTERVAL);
        write_pending(shared, &mut lock(&shared.sink));
    }
}

fn write_pending(shared: &Shared, sink: &mut Sink) {
    // The next batch starts with the room this one needed, so a busy
    // server does not regrow the buffer every interval.
    let batch = {
        let mut pending = lock(&shared.pending);
        if pending.is_empty() {
            return;
        }
        let capacity = pending.capacity();
        std::mem::replace(&mut *pending, String::with_capacity(capacity))
    };
    if batch.is_empty() {
        return;
    }
    let _ = match sink {
        Sink::Stdout => {
            let mut stdout = io::stdout().lock();
            stdout.write_all(batch.as_bytes()).and_then(|()| stdout.flush())
        }
        Sink::File(file) => file.write_all(batch.as_bytes()),
    };
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
