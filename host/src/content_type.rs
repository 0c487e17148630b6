//! The `Content-Type` of a served file, chosen by its extension.
//!
//! A short fixed table covers what a lab serves (OSTree repositories, ISO
//! images, kickstarts, web pages); everything else is
//! `application/octet-stream`, which is what OSTree objects are anyway.

use std::path::Path;

/// Content type for a file that has no better match.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

const CONTENT_TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("xml", "application/xml"),
    ("txt", "text/plain; charset=utf-8"),
    ("ks", "text/plain; charset=utf-8"),
    ("cfg", "text/plain; charset=utf-8"),
    ("conf", "text/plain; charset=utf-8"),
    ("kdl", "text/plain; charset=utf-8"),
    ("toml", "text/plain; charset=utf-8"),
    ("yaml", "text/plain; charset=utf-8"),
    ("yml", "text/plain; charset=utf-8"),
    ("sh", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("ico", "image/x-icon"),
    ("pdf", "application/pdf"),
    ("iso", "application/x-iso9660-image"),
    ("tar", "application/x-tar"),
    ("gz", "application/gzip"),
    ("tgz", "application/gzip"),
    ("xz", "application/x-xz"),
    ("zst", "application/zstd"),
    ("bz2", "application/x-bzip2"),
    ("zip", "application/zip"),
    ("rpm", "application/x-rpm"),
    ("asc", "application/pgp-signature"),
];

/// The content type for `path`, by its extension, ignoring ASCII case.
pub fn content_type_for(path: &Path) -> &'static str {
    let Some(extension) = path.extension().and_then(|extension| extension.to_str()) else {
        return DEFAULT_CONTENT_TYPE;
    };
    content_type_for_extension(extension)
}

/// `content_type_for` on a `/`-separated relative path, as the handler
/// has it: the extension as `Path::extension` finds it (after the file
/// name's last dot, none for `.hidden`), without building a `Path`.
pub(crate) fn content_type_for_name(relative: &str) -> &'static str {
    // One backwards scan for the last `.` of the last segment.
    let bytes = relative.as_bytes();
    for byte_idx in (0..bytes.len()).rev() {
        match bytes[byte_idx] {
            b'/' => return DEFAULT_CONTENT_TYPE,
            b'.' => {
                let starts_name = byte_idx == 0 || bytes[byte_idx - 1] == b'/';
                return match starts_name {
                    true => DEFAULT_CONTENT_TYPE,
                    false => content_type_for_extension(&relative[byte_idx + 1..]),
                };
            }
            _ => {}
        }
    }
    DEFAULT_CONTENT_TYPE
}

/// The longest extension in `CONTENT_TYPES`: OSTree's (`filez`,
/// `dirtree`, `commit`...) are all longer, so they skip the table.
const LONGEST_EXTENSION: usize = 4;

fn content_type_for_extension(extension: &str) -> &'static str {
    if extension.len() > LONGEST_EXTENSION {
        return DEFAULT_CONTENT_TYPE;
    }
    CONTENT_TYPES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(extension))
        .map_or(DEFAULT_CONTENT_TYPE, |(_, content_type)| content_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(path: &str, expect: &str) {
        assert_eq!(content_type_for(Path::new(path)), expect, "{path}");
        assert_eq!(content_type_for_name(path.trim_start_matches('/')), expect, "{path} by name");
    }

    #[test]
    fn no_extension_is_longer_than_the_shortcut_allows() {
        assert!(CONTENT_TYPES.iter().all(|(extension, _)| extension.len() <= LONGEST_EXTENSION));
    }

    #[test]
    fn extensions_choose_the_type() {
        check("/srv/index.html", "text/html; charset=utf-8");
        check("/srv/INDEX.HTM", "text/html; charset=utf-8");
        check("/srv/edge.iso", "application/x-iso9660-image");
        check("/srv/edge.ks", "text/plain; charset=utf-8");
        check("/srv/objects/ab/cd.filez", DEFAULT_CONTENT_TYPE);
        check("/srv/config", DEFAULT_CONTENT_TYPE);
        check("/srv/.hidden", DEFAULT_CONTENT_TYPE);
        check("/srv/..tar", "application/x-tar");
        check("/srv/name.", DEFAULT_CONTENT_TYPE);
        check("edge.iso", "application/x-iso9660-image");
    }
}
