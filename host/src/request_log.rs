//! Where the per-request lines and the closing summary are written: stdout,
//! or the file given with `--log`.
//!
//! Request handlers format their line and hand it to one writer thread over
//! a bounded channel; the thread writes whatever has queued up in one
//! `write` and goes back to waiting, so the log is as live as before (a
//! line is written as soon as the thread wakes) but a busy server makes one
//! system call per batch instead of one per request, and no handler waits on
//! a lock around the disk. Lines are whole and in the order requests
//! finished. A write error (a full disk, a closed pipe) does not stop the
//! server: serving files matters more than logging them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::Summary;

/// Lines that may wait for the writer; a handler blocks when this many are
/// queued, which only a stalled disk or terminal causes.
const QUEUED_LINES: usize = 65_536;

pub(crate) struct RequestLog {
    /// `None` when `--quiet` turned the per-request lines off.
    wants_request_lines: bool,
    /// `None` when there is neither a request line nor a summary to write.
    sender: Option<SyncSender<Message>>,
}

enum Message {
    Line(String),
    /// Written after every line queued before it; answered once it is out.
    Finish {
        summary: Option<String>,
        done: SyncSender<()>,
    },
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
        let sender = match sink {
            Some(sink) => {
                let (sender, receiver) = sync_channel(QUEUED_LINES);
                std::thread::Builder::new()
                    .name("edgelab-serve-log".into())
                    .spawn(move || write_lines(sink, receiver))?;
                Some(sender)
            }
            None => None,
        };
        Ok(RequestLog { wants_request_lines: !quiet, sender })
    }

    /// Whether per-request lines are wanted; callers skip formatting if not.
    pub(crate) fn wants_request_lines(&self) -> bool {
        self.wants_request_lines
    }

    pub(crate) fn write_request_line(&self, line: std::fmt::Arguments<'_>) {
        if let (true, Some(sender)) = (self.wants_request_lines, &self.sender) {
            let _ = sender.send(Message::Line(std::fmt::format(line)));
        }
    }

    /// Waits until every request line is written, then appends the summary
    /// to the log file, if there is one. The binary prints it on stdout
    /// itself.
    pub(crate) fn write_summary(&self, summary: &Summary) {
        let Some(sender) = &self.sender else {
            return;
        };
        let (done, written) = sync_channel(1);
        let summary = Some(summary.to_string());
        if sender.send(Message::Finish { summary, done }).is_ok() {
            let _ = written.recv();
        }
    }
}

/// The writer thread: one `write` per batch of queued lines.
fn write_lines(mut sink: Sink, receiver: Receiver<Message>) {
    let mut batch = String::new();
    while let Ok(first) = receiver.recv() {
        let mut finished = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    batch.push_str(&line);
                    batch.push('\n');
                }
                Message::Finish { summary, done } => {
                    if let (Sink::File(_), Some(summary)) = (&sink, summary) {
                        batch.push_str(&summary);
                    }
                    finished.push(done);
                }
            }
            next = receiver.try_recv().ok();
        }
        let _ = match &mut sink {
            Sink::Stdout => io::stdout().lock().write_all(batch.as_bytes()).and_then(|()| io::stdout().flush()),
            Sink::File(file) => file.write_all(batch.as_bytes()),
        };
        batch.clear();
        for done in finished {
            let _ = done.send(());
        }
    }
}
