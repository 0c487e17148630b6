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

/// The largest file the parsers are given (a lab file or blueprint is a few
/// KiB; anything near this is a mistake, such as the wrong file).
pub const MAX_INPUT_BYTES: usize = 1 << 20;
/// The deepest nesting of `{ }` or `[ ]` the parsers are given: they
/// recurse per level, so a deeper file could overflow the stack.
pub const MAX_NESTING: usize = 64;

/// The comment syntax of the file being bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `//` and `/* */` comments, `"strings"` (KDL).
    Kdl,
    /// `#` comments, `"strings"` and `'literal strings'` (TOML).
    Toml,
}

/// Refuses `text` before a parser sees it when it is larger than
/// `MAX_INPUT_BYTES` or nests deeper than `MAX_NESTING` (outside strings
/// and comments), with the place it went too deep.
pub fn check_bounds(text: &str, syntax: Syntax) -> Result<(), Diagnostic> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(Diagnostic {
            message: format!("the file is {} bytes, more than the {MAX_INPUT_BYTES} this reads", text.len()),
            span: (0, 0).into(),
            label: String::new(),
            help: Some("is this the right file?".into()),
        });
    }
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        match (syntax, bytes[at]) {
            (Syntax::Kdl, b'/') if rest.starts_with(b"//") => at = skip_past(bytes, at, b"\n"),
            (Syntax::Kdl, b'/') if rest.starts_with(b"/*") => at = skip_past(bytes, at + 2, b"*/"),
            (Syntax::Toml, b'#') => at = skip_past(bytes, at, b"\n"),
            (_, b'"') => at = skip_string(bytes, at + 1, b'"', true),
            (Syntax::Toml, b'\'') => at = skip_string(bytes, at + 1, b'\'', false),
            (_, b'{' | b'[') => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diagnostic {
                        message: format!("nested more than {MAX_NESTING} levels deep"),
                        span: (at, 1).into(),
                        label: "too deep".into(),
                        help: Some("a lab file or blueprint needs a few levels; look for an unclosed block".into()),
                    });
                }
                at += 1;
            }
            (_, b'}' | b']') => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            _ => at += 1,
        }
    }
    Ok(())
}

/// The offset just after the next `end` at or after `from` (the end of
/// the text when there is none).
fn skip_past(bytes: &[u8], from: usize, end: &[u8]) -> usize {
    bytes[from.min(bytes.len())..]
        .windows(end.len())
        .position(|window| window == end)
        .map_or(bytes.len(), |found| from + found + end.len())
}

/// The offset after the string starting at `from` closes with `quote`.
fn skip_string(bytes: &[u8], mut from: usize, quote: u8, escapes: bool) -> usize {
    while from < bytes.len() {
        match bytes[from] {
            b'\\' if escapes => from += 2,
            byte if byte == quote => return from + 1,
            _ => from += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(check_bounds("a { b { c 1; }; }", Syntax::Kdl).is_ok());
        let deep = "a {".repeat(MAX_NESTING + 1);
        let err = check_bounds(&deep, Syntax::Kdl).unwrap_err();
        assert_eq!(err.span.offset(), MAX_NESTING * 3 + 2);
        // Braces in strings and comments do not count.
        let quoted = format!("a \"{}\" // {}\n/* {} */", "{".repeat(100), "{".repeat(100), "[".repeat(100));
        assert!(check_bounds(&quoted, Syntax::Kdl).is_ok());
        let toml = format!("a = '{}' # {}\nb = [[1], [2]]", "[".repeat(100), "{".repeat(100));
        assert!(check_bounds(&toml, Syntax::Toml).is_ok());
        assert!(check_bounds(&format!("a = {}", "[".repeat(MAX_NESTING + 1)), Syntax::Toml).is_err());
        assert!(check_bounds(&"x".repeat(MAX_INPUT_BYTES + 1), Syntax::Toml).is_err());
    }
}
