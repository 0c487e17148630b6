//! graphviz `dot`, for `cargo xtask graph --format svg`.

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "dot", debian: Some("graphviz"), rhel: Some("graphviz"), pip: None, version_args: &["-V"] }];

pub fn render_svg(dot: &str) -> anyhow::Result<String> {
    super::require("dot")?;
    Ok(Cmd::new("dot").arg("-Tsvg").stdin(dot.as_bytes().to_vec()).run()?.stdout)
}
