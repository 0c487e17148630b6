//! graphviz `dot`, for `cargo xtask graph --format svg`.

use super::Cmd;

pub fn render_svg(dot: &str) -> anyhow::Result<String> {
    super::require("dot")?;
    Ok(Cmd::new("dot").arg("-Tsvg").stdin(dot.as_bytes().to_vec()).run()?.stdout)
}
