//! Turning a request path into a file under the served root, and refusing
//! every path that could leave it.
//!
//! This is done in two steps. `resolve_path` is pure: it reads the raw path of
//! the request (still percent-encoded, exactly as the client sent it), decodes
//! each segment once and refuses anything that is not a plain file name, so
//! `..`, encoded slashes and dots, backslashes, NUL, control characters, empty
//! segments and bad encodings never reach the file system. `open_confined`
//! then does the I/O: it opens the path with `openat2(RESOLVE_BENEATH)`, or
//! canonicalizes it and refuses a result outside the canonical root, so a
//! symlink inside the root may point anywhere inside it but never out of it.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hyper::StatusCode;

/// Why a request path was refused before any file was opened. Every variant
/// is a hostile or malformed request, counted as rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The path does not start with `/` (for example `*` or `etc/passwd`).
    NotAbsolute,
    /// A segment is `.` or `..`, raw or percent-encoded.
    DotSegment,
    /// Two slashes in a row, such as `//etc/passwd` or `/a//b`.
    EmptySegment,
    /// A `/` hidden in a segment as `%2f`.
    EncodedSlash,
    /// A backslash, raw or as `%5c`, which some systems treat as a separator.
    Backslash,
    /// A NUL byte (`%00`), which would cut the path short in C APIs.
    Nul,
    /// Another control character, such as `%0a` (which could forge log lines).
    ControlCharacter,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// Percent-decoding produced bytes that are not UTF-8 (such as `%c0%ae`).
    NotUtf8,
    /// The path exists but, after following symlinks, lies outside the root.
    OutsideRoot,
}

/// Why a resolved path could not be served.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// The path was refused; see `Reject`.
    Rejected(Reject),
    /// Nothing servable is there: missing, a directory, or a path through a
    /// file. All answer 404.
    NotFound,
    /// The file exists but is not a regular file (a FIFO, a socket, a device)
    /// or we may not read it.
    Forbidden,
    /// Any other I/O error, answered with 500.
    Io(io::Error),
}

impl Reject {
    /// The status a rejected request is answered with. Malformed encodings are
    /// the client's syntax error (400); everything else is forbidden (403).
    pub fn status(self) -> StatusCode {
        match self {
            Reject::BadPercentEncoding | Reject::NotUtf8 | Reject::NotAbsolute => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// A short reason for the request log.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::NotAbsolute => "path does not start with /",
            Reject::DotSegment => "dot segment",
            Reject::EmptySegment => "empty segment",
            Reject::EncodedSlash => "encoded slash",
            Reject::Backslash => "backslash",
            Reject::Nul => "NUL byte",
            Reject::ControlCharacter => "control character",
            Reject::BadPercentEncoding => "bad percent-encoding",
            Reject::NotUtf8 => "percent-encoding is not UTF-8",
            Reject::OutsideRoot => "resolves outside the root",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Maps the raw path of a request (percent-encoded, without the query) to a
/// path under `root`, or says why it may not be served. No I/O: the result
/// may still name a missing file or a symlink, which `open_confined` checks.
///
/// A trailing slash is allowed (`/dir/` names `dir`); `/` names the root.
pub fn resolve_path(root: &Path, raw_uri_path: &str) -> Result<PathBuf, Reject> {
    let relative = resolve_relative(raw_uri_path)?;
    Ok(match relative.is_empty() {
        true => root.to_path_buf(),
        false => root.join(relative),
    })
}

/// `resolve_path` without the root: the decoded path relative to it
/// (`objects/ab/cd.filez`, empty for the root), checked segment by
/// segment. This is what the server uses: one allocation, sized for the
/// `openat2` call's terminating NUL, and no `PathBuf` to build and take
/// apart again (that cost more than the rest of the checks together).
pub(crate) fn resolve_relative(raw_uri_path: &str) -> Result<String, Reject> {
    let Some(relative) = raw_uri_path.strip_prefix('/') else {
        return Err(Reject::NotAbsolute);
    };
    if let Some(plain) = plain_relative(relative) {
        return Ok(plain);
    }
    // Checking the raw text first refuses a backslash whatever its position,
    // before decoding could give it another meaning.
    if relative.contains('\\') {
        return Err(Reject::Backslash);
    }
    let mut path = String::with_capacity(relative.len() + 1);
    if relative.is_empty() {
        return Ok(path);
    }
    let mut segments = relative.split('/').peekable();
    while let Some(raw_segment) = segments.next() {
        if raw_segment.is_empty() {
            let is_trailing_slash = segments.peek().is_none();
            if is_trailing_slash {
                break;
            }
            return Err(Reject::EmptySegment);
        }
        let segment = percent_decode_segment(raw_segment)?;
        check_segment(&segment)?;
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(&segment);
    }
    Ok(path)
}

/// The common case in one pass over the bytes: printable ASCII without `%`
/// or `\\` (every OSTree object path), so nothing needs decoding and the
/// only segment checks left are empty, `.` and `..` segments. `None` sends
/// the path the general way, which gives the precise rejection.
fn plain_relative(relative: &str) -> Option<String> {
    let bytes = relative.as_bytes();
    let mut segment_start = 0;
    for (byte_idx, &byte) in bytes.iter().enumerate() {
        match byte {
            b'/' => {
                let segment = &bytes[segment_start..byte_idx];
                if matches!(segment, b"" | b"." | b"..") {
                    return None;
                }
                segment_start = byte_idx + 1;
            }
            b'%' | b'\\' => return None,
            0x21..=0x7e => {}
            // Space is allowed but uncommon; control bytes and non-ASCII
            // go the general way.
            _ => return None,
        }
    }
    let last_segment = &bytes[segment_start..];
    let trimmed = match last_segment {
        // A trailing slash (`/dir/`), or the root itself.
        b"" => &relative[..relative.len().saturating_sub(1)],
        b"." | b".." => return None,
        _ => relative,
    };
    let mut path = String::with_capacity(trimmed.len() + 1);
    path.push_str(trimmed);
    Some(path)
}

/// The served root: its canonical path, and the folder held open for
/// `openat2`, when the kernel has it.
pub(crate) struct RootDir {
    /// Symlinks resolved, so prefix checks are sound.
    pub(crate) path: PathBuf,
    fd: Option<OwnedFd>,
}

impl RootDir {
    /// `canonical_root` must be canonical already. The folder is opened and
    /// `openat2` tried once; without it every open takes the canonicalize
    /// path.
    pub(crate) fn open(canonical_root: PathBuf) -> RootDir {
        let fd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_PATH)
            .open(&canonical_root)
            .ok()
            .map(OwnedFd::from)
            .filter(|fd| openat2_beneath(fd, c".").is_ok());
        RootDir { path: canonical_root, fd }
    }
}

/// Opens the file at `path` (from `resolve_path`) for reading if, after
/// following every symlink, it is a regular file under the root.
///
/// The fast path is one `openat2` with `RESOLVE_BENEATH`: the kernel follows
/// symlinks but fails any resolution that leaves the root, with no window
/// for a race. Whatever it refuses or cannot do (a symlink leaving the root,
/// an absolute symlink, an old kernel) goes the slow path, which decides:
/// canonicalize, check the prefix, open without following. Canonicalizing
/// costs an `lstat` per path component, which for OSTree's
/// `repo/objects/xx/yyy.filez` is most of a small request's system calls.
pub(crate) fn open_confined(root: &RootDir, relative: String) -> Result<(File, Metadata), OpenFailure> {
    let file = match open_beneath(root, relative) {
        Ok(opened) => opened.map_err(open_failure_from_io)?,
        Err(relative) => {
            let path = match relative.is_empty() {
                true => root.path.clone(),
                false => root.path.join(relative),
            };
            open_canonical(&root.path, &path)?
        }
    };
    let metadata = file.metadata().map_err(OpenFailure::Io)?;
    if metadata.is_dir() {
        return Err(OpenFailure::NotFound);
    }
    if !metadata.is_file() {
        return Err(OpenFailure::Forbidden);
    }
    Ok((file, metadata))
}

/// `openat2` beneath the root; `Err` hands `relative` back when the slow
/// path must decide.
fn open_beneath(root: &RootDir, relative: String) -> Result<io::Result<File>, String> {
    let Some(fd) = root.fd.as_ref() else { return Err(relative) };
    let text = match relative.is_empty() {
        true => String::from("."),
        false => relative,
    };
    // Decoded segments hold no NUL (`check_segment`), so this cannot fail;
    // it reuses the string's allocation.
    let c_relative = match CString::new(text) {
        Ok(c_relative) => c_relative,
        Err(error) => return Err(String::from_utf8_lossy(&error.into_vec()).into_owned()),
    };
    match openat2_beneath(fd, &c_relative) {
        Ok(file) => Ok(Ok(file)),
        Err(error) => match error.raw_os_error() {
            // Leaving the root (EXDEV), a magic link or too many links
            // (ELOOP), a concurrent rename (EAGAIN), or no openat2 at all.
            Some(libc::EXDEV | libc::ELOOP | libc::EAGAIN | libc::ENOSYS | libc::EPERM | libc::EINVAL) => {
                let text = c_relative.into_string().unwrap_or_default();
                Err(if text == "." { String::new() } else { text })
            }
            _ => Ok(Err(error)),
        },
    }
}

fn openat2_beneath(root_fd: &OwnedFd, relative: &CStr) -> io::Result<File> {
    // SAFETY: all-zero is a valid `open_how` (no flags, no mode, no resolve
    // restrictions); the fields that matter are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // O_NONBLOCK keeps a FIFO from blocking the open; nothing changes for
    // regular files.
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the fd is open, `relative` is NUL-terminated, and `how` is a
    // valid `open_how` of the size passed; all outlive the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd.as_raw_fd(),
            relative.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    match result {
        // SAFETY: a non-negative result is a new fd that we now own.
        fd if fd >= 0 => Ok(unsafe { File::from_raw_fd(fd as RawFd) }),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The slow path: canonicalize, check the prefix, open without following.
fn open_canonical(canonical_root: &Path, path: &Path) -> Result<File, OpenFailure> {
    let canonical_path = std::fs::canonicalize(path).map_err(open_failure_from_io)?;
    if !canonical_path.starts_with(canonical_root) {
        return Err(OpenFailure::Rejected(Reject::OutsideRoot));
    }
    // The canonical path has no symlinks left, so O_NOFOLLOW only fires if a
    // symlink was swapped in since canonicalize looked; that race is refused
    // rather than followed. O_NONBLOCK keeps a FIFO from blocking the open;
    // it changes nothing for regular files.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&canonical_path)
        .map_err(open_failure_from_io)
}

/// Decodes `%XX` escapes in one segment. Borrows when there is nothing to
/// decode, which is the common case for OSTree object paths.
fn percent_decode_segment(raw_segment: &str) -> Result<Cow<'_, str>, Reject> {
    if !raw_segment.contains('%') {
        return Ok(Cow::Borrowed(raw_segment));
    }
    let raw_bytes = raw_segment.as_bytes();
    let mut decoded = Vec::with_capacity(raw_bytes.len());
    let mut byte_idx = 0;
    while byte_idx < raw_bytes.len() {
        let byte = raw_bytes[byte_idx];
        if byte != b'%' {
            decoded.push(byte);
            byte_idx += 1;
            continue;
        }
        let high = raw_bytes.get(byte_idx + 1).copied().and_then(hex_value);
        let low = raw_bytes.get(byte_idx + 2).copied().and_then(hex_value);
        match (high, low) {
            (Some(high), Some(low)) => decoded.push(high * 16 + low),
            _ => return Err(Reject::BadPercentEncoding),
        }
        byte_idx += 3;
    }
    match String::from_utf8(decoded) {
        Ok(text) => Ok(Cow::Owned(text)),
        Err(_) => Err(Reject::NotUtf8),
    }
}

/// Refuses a decoded segment that is not a plain file name.
fn check_segment(segment: &str) -> Result<(), Reject> {
    if segment == "." || segment == ".." {
        return Err(Reject::DotSegment);
    }
    for character in segment.chars() {
        match character {
            '/' => return Err(Reject::EncodedSlash),
            '\\' => return Err(Reject::Backslash),
            '\0' => return Err(Reject::Nul),
            _ if character.is_control() => return Err(Reject::ControlCharacter),
            _ => {}
        }
    }
    Ok(())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn open_failure_from_io(error: io::Error) -> OpenFailure {
    match error.kind() {
        io::ErrorKind::NotFound
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::InvalidFilename => OpenFailure::NotFound,
        io::ErrorKind::PermissionDenied => OpenFailure::Forbidden,
        _ => match error.raw_os_error() {
            // A symlink swapped in after canonicalize (see `open_confined`).
            Some(libc::ELOOP) => OpenFailure::Rejected(Reject::OutsideRoot),
            _ => OpenFailure::Io(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw_uri_path: &str, expect: Result<&str, Reject>) {
        let root = Path::new("/srv/repo");
        let actual = resolve_path(root, raw_uri_path);
        let expect = expect.map(|relative| root.join(relative));
        assert_eq!(actual, expect, "resolving {raw_uri_path:?}");
    }

    #[test]
    fn plain_paths_resolve_under_the_root() {
        check("/", Ok(""));
        check("/config", Ok("config"));
        check("/refs/heads/edge", Ok("refs/heads/edge"));
        check("/objects/ab/cdef0123.filez", Ok("objects/ab/cdef0123.filez"));
        check("/dir/", Ok("dir"));
        check("/.hidden", Ok(".hidden"));
        check("/...", Ok("..."));
        check("/a..b", Ok("a..b"));
        check("/..a", Ok("..a"));
    }

    #[test]
    fn percent_encoding_is_decoded_once() {
        check("/with%20space", Ok("with space"));
        check("/caf%C3%A9", Ok("café"));
        check("/%61bc", Ok("abc"));
        // Double encoding names a file literally called `%2e%2e`: harmless.
        check("/%252e%252e", Ok("%2e%2e"));
        check("/%2e", Err(Reject::DotSegment));
    }

    #[test]
    fn dot_segments_are_rejected() {
        check("/..", Err(Reject::DotSegment));
        check("/../etc/passwd", Err(Reject::DotSegment));
        check("/../../etc/passwd", Err(Reject::DotSegment));
        check("/a/../../x", Err(Reject::DotSegment));
        check("/a/./b", Err(Reject::DotSegment));
        check("/.", Err(Reject::DotSegment));
        check("/a/..", Err(Reject::DotSegment));
        check("/a/../", Err(Reject::DotSegment));
        check("/%2e%2e/%2e%2e/etc/passwd", Err(Reject::DotSegment));
        check("/%2E%2E/etc", Err(Reject::DotSegment));
        check("/.%2e/etc", Err(Reject::DotSegment));
        check("/%2e./etc", Err(Reject::DotSegment));
    }

    #[test]
    fn encoded_separators_are_rejected() {
        check("/..%2fetc", Err(Reject::EncodedSlash));
        check("/..%2Fetc%2Fpasswd", Err(Reject::EncodedSlash));
        check("/%2fetc%2fpasswd", Err(Reject::EncodedSlash));
        check("/a%2f..%2f..%2fetc", Err(Reject::EncodedSlash));
        check("/..%5cetc", Err(Reject::Backslash));
        check("/%5C..%5C..%5Cetc", Err(Reject::Backslash));
        check("/..\\..\\etc\\passwd", Err(Reject::Backslash));
        check("/a\\b", Err(Reject::Backslash));
    }

    #[test]
    fn double_slashes_and_relative_paths_are_rejected() {
        check("//etc/passwd", Err(Reject::EmptySegment));
        check("/a//b", Err(Reject::EmptySegment));
        check("///", Err(Reject::EmptySegment));
        check("etc/passwd", Err(Reject::NotAbsolute));
        check("*", Err(Reject::NotAbsolute));
        check("", Err(Reject::NotAbsolute));
    }

    #[test]
    fn nul_and_control_characters_are_rejected() {
        check("/%00", Err(Reject::Nul));
        check("/config%00.txt", Err(Reject::Nul));
        check("/a%0ab", Err(Reject::ControlCharacter));
        check("/a%0d%0aforged", Err(Reject::ControlCharacter));
        check("/a%7f", Err(Reject::ControlCharacter));
    }

    #[test]
    fn bad_encodings_are_rejected() {
        check("/%", Err(Reject::BadPercentEncoding));
        check("/%2", Err(Reject::BadPercentEncoding));
        check("/%zz", Err(Reject::BadPercentEncoding));
        check("/%%32%65", Err(Reject::BadPercentEncoding));
        check("/%c0%ae%c0%ae/etc", Err(Reject::NotUtf8));
        check("/%ff", Err(Reject::NotUtf8));
        check("/%e0%80%ae", Err(Reject::NotUtf8));
    }

    #[test]
    fn rejections_map_to_client_errors() {
        assert_eq!(Reject::DotSegment.status(), StatusCode::FORBIDDEN);
        assert_eq!(Reject::OutsideRoot.status(), StatusCode::FORBIDDEN);
        assert_eq!(Reject::NotUtf8.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn symlinks_may_not_leave_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let served = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "secret").unwrap();
        std::fs::write(served.path().join("inside"), "inside").unwrap();
        std::os::unix::fs::symlink(outside.path(), served.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("inside", served.path().join("alias")).unwrap();
        std::fs::create_dir(served.path().join("dir")).unwrap();
        let root = RootDir::open(std::fs::canonicalize(served.path()).unwrap());

        let open = |raw: &str| open_confined(&root, resolve_relative(raw).unwrap());
        assert!(matches!(open("/escape/secret"), Err(OpenFailure::Rejected(Reject::OutsideRoot))));
        assert!(matches!(open("/escape"), Err(OpenFailure::Rejected(Reject::OutsideRoot))));
        assert!(open("/alias").is_ok());
        assert!(open("/inside").is_ok());
        assert!(matches!(open("/missing"), Err(OpenFailure::NotFound)));
        assert!(matches!(open("/inside/x"), Err(OpenFailure::NotFound)));
        assert!(matches!(open("/dir/"), Err(OpenFailure::NotFound)));
        assert!(matches!(open("/"), Err(OpenFailure::NotFound)));
    }
}
