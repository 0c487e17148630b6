//! Diagnostics for the files a user writes (`lab.kdl`, blueprint TOML):
//! every mistake found in one file, each with its span and a help line,
//! rendered by miette with a caret under the span, or as plain
//! `file:line:column: message` lines for tests and logs.

use miette::{NamedSource, SourceSpan};

/// One mistake in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
pub struct Diagnostic {
    pub message: String,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

/// All the mistakes in one file, reported at once.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} has {} error{}", source_code.name(), diagnostics.len(), if diagnostics.len() == 1 { "" } else { "s" })]
pub struct Diagnostics {
    /// The file's text, named as the user should read it.
    #[source_code]
    pub source_code: NamedSource<String>,
    #[related]
    pub diagnostics: Vec<Diagnostic>,
    pub layout: PlainLayout,
}

/// How `to_plain` lays out one diagnostic. Lab files and blueprints were
/// reported differently from the start; each keeps its layout so golden
/// output and logs do not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainLayout {
    /// `file:line:column: message [label]`, the help on its own line (`lab.kdl`).
    LabelThenHelpBelow,
    /// `file:line:column: message (help: ...)`, one line each (blueprints).
    HelpInline,
}

impl Diagnostics {
    pub fn new(file_name: &str, text: &str, diagnostics: Vec<Diagnostic>, layout: PlainLayout) -> Diagnostics {
        Diagnostics { source_code: NamedSource::new(file_name, text.to_string()), diagnostics, layout }
    }

    /// Each diagnostic as `file:line:column: message` plus its help, for
    /// tests and for logs where miette's drawing is not wanted.
    pub fn to_plain(&self) -> String {
        let text = self.source_code.inner();
        let mut out = String::new();
        for diag in &self.diagnostics {
            let (line, column) = line_column(text, diag.span.offset());
            out.push_str(&format!("{}:{line}:{column}: {}", self.source_code.name(), diag.message));
            match self.layout {
                PlainLayout::LabelThenHelpBelow => {
                    if !diag.label.is_empty() {
                        out.push_str(&format!(" [{}]", diag.label));
                    }
                    if let Some(help) = &diag.help {
                        out.push_str(&format!("\n  help: {help}"));
                    }
                }
                PlainLayout::HelpInline => {
                    if let Some(help) = &diag.help {
                        out.push_str(&format!(" (help: {help})"));
                    }
                }
            }
            out.push('\n');
        }
        out
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|it| it.chars().count()).unwrap_or(0) + 1;
    (line, column)
}
