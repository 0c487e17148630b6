//! Where the per-request lines and the closing summary are written: stdout,
//! or the file given with `--log`.
//!
//! Each line is written whole under one lock, so lines from requests running
//! on different threads never interleave. A write error (a full disk, a
//! closed pipe) does not stop the server: serving files matters more than
//! logging them.

use std::fs::{File, OpenOptions};
use std::io::{self, LineWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::Summary;

pub(crate) struct RequestLog {
    /// `None` when `--quiet` turned the per-request lines off.
    request_lines: Option<Mutex<Sink>>,
    /// The log file, also when quiet, so the summary lands there too.
    file: Option<Mutex<Sink>>,
}

enum Sink {
    Stdout,
    File(LineWriter<File>),
}

impl RequestLog {
    pub(crate) fn open(quiet: bool, log_path: Option<&Path>) -> io::Result<RequestLog> {
        let file = match log_path {
            Some(log_path) => {
                let file = OpenOptions::new().create(true).append(true).open(log_path)?;
                Some(Sink::File(LineWriter::new(file)))
            }
            None => None,
        };
        let (request_lines, file) = match (quiet, file) {
            (true, file) => (None, file.map(Mutex::new)),
            (false, Some(file)) => (Some(Mutex::new(file)), None),
            (false, None) => (Some(Mutex::new(Sink::Stdout)), None),
        };
        Ok(RequestLog { request_lines, file })
    }

    /// Whether per-request lines are wanted; callers skip formatting if not.
    pub(crate) fn wants_request_lines(&self) -> bool {
        self.request_lines.is_some()
    }

    pub(crate) fn write_request_line(&self, line: std::fmt::Arguments<'_>) {
        if let Some(sink) = &self.request_lines {
            write_line(sink, line);
        }
    }

    /// Appends the summary to the log file, if there is one. The binary
    /// prints it on stdout itself.
    pub(crate) fn write_summary(&self, summary: &Summary) {
        let file = self.file.as_ref().or(self.request_lines.as_ref());
        if let Some(sink) = file {
            let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Sink::File(file) = &mut *sink {
                let _ = write!(file, "{summary}");
                let _ = file.flush();
            }
        }
    }
}

fn write_line(sink: &Mutex<Sink>, line: std::fmt::Arguments<'_>) {
    let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = match &mut *sink {
        Sink::Stdout => writeln!(io::stdout().lock(), "{line}"),
        Sink::File(file) => writeln!(file, "{line}"),
    };
}
