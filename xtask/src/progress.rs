//! Progress on long work: one line per stage as it starts and ends, and
//! notes from inside stages, on stderr. Quiet under `--quiet` and when
//! stderr is not a terminal no spinner is drawn, only plain lines.

use std::{
    io::IsTerminal,
    sync::Mutex,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    quiet: bool,
    spinner: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet, spinner: Mutex::new(None) }
    }

    /// A stage starts: shows a spinner on a terminal, a line elsewhere.
    pub fn start(&self, what: &str) -> Instant {
        if !self.quiet {
            if std::io::stderr().is_terminal() {
                let spinner = ProgressBar::new_spinner();
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_message(what.to_string());
                spinner.enable_steady_tick(Duration::from_millis(120));
                *self.spinner.lock().unwrap_or_else(|it| it.into_inner()) = Some(spinner);
            } else {
                eprintln!("==> {what}");
            }
        }
        Instant::now()
    }

    /// A note from inside a running stage ("pulling 9,201 objects").
    pub fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &*self.spinner.lock().unwrap_or_else(|it| it.into_inner()) {
            Some(spinner) => spinner.set_message(text.to_string()),
            None => eprintln!("    {text}"),
        }
    }

    /// A line that stays on screen (what was installed, a warning): printed
    /// above the spinner on a terminal, where a `note` would be replaced.
    pub fn keep(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &*self.spinner.lock().unwrap_or_else(|it| it.into_inner()) {
            Some(spinner) => spinner.println(format!("    {text}")),
            None => eprintln!("    {text}"),
        }
    }

    /// The stage ended, with a one-line outcome.
    pub fn finish(&self, outcome: &str) {
        if let Some(spinner) = self.spinner.lock().unwrap_or_else(|it| it.into_inner()).take() {
            spinner.finish_and_clear();
        }
        if !self.quiet {
            eprintln!("    {outcome}");
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }
}
