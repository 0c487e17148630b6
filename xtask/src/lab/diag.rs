//! Diagnostics for `lab.kdl`: every mistake found, each with its span in the
//! file and a help line, rendered by miette with a caret under the span.

use miette::{Diagnostic, NamedSource, SourceSpan};

/// One mistake in the lab file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct LabDiagnostic {
    pub message: String,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

/// All the mistakes in one lab file, reported at once.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} has {} error{}", file_name, diagnostics.len(), if diagnostics.len() == 1 { "" } else { "s" })]
pub struct LabError {
    pub file_name: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[related]
    pub diagnostics: Vec<LabDiagnostic>,
}

impl LabError {
    /// Each diagnostic as `file:line:column: message (help: ...)`, for tests
    /// and for logs where miette's drawing is not wanted.
    pub fn to_plain(&self) -> String {
        let text = self.source_code.inner();
        let mut out = String::new();
        for diag in &self.diagnostics {
            let (line, column) = line_column(text, diag.span.offset());
            out.push_str(&format!("{}:{line}:{column}: {}", self.file_name, diag.message));
            if !diag.label.is_empty() {
                out.push_str(&format!(" [{}]", diag.label));
            }
            if let Some(help) = &diag.help {
                out.push_str(&format!("\n  help: {help}"));
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
