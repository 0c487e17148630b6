//! Single byte ranges: parsing the `Range` header and choosing which bytes
//! of a file to send.
//!
//! Only one range per request is honoured. A header that names several ranges,
//! or that is not valid `bytes=` syntax, is ignored and the whole file is sent,
//! which RFC 9110 (section 14.2) allows. OSTree and curl ask for one range at
//! most, and multipart answers would cost code that nobody here uses.

/// A parsed `Range: bytes=...` header, before the file's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last`, both inclusive.
    FromTo { first: u64, last: u64 },
    /// `bytes=first-`: from `first` to the end.
    From { first: u64 },
    /// `bytes=-length`: the last `length` bytes.
    Suffix { length: u64 },
}

/// What to send of a file of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The whole file, answered with 200.
    Whole,
    /// Bytes `first..=last`, answered with 206 and `Content-Range`.
    Partial { first: u64, last: u64 },
    /// No byte of the file is in the range: 416.
    Unsatisfiable,
}

/// Parses the value of a `Range` header. `None` means the header is to be
/// ignored: it is not one well-formed byte range.
pub fn parse_range(header_value: &str) -> Option<ByteRange> {
    let spec = header_value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(ByteRange::Suffix { length: parse_decimal(last)? }),
        (false, true) => Some(ByteRange::From { first: parse_decimal(first)? }),
        (false, false) => {
            let first = parse_decimal(first)?;
            let last = parse_decimal(last)?;
            if last < first {
                return None;
            }
            Some(ByteRange::FromTo { first, last })
        }
    }
}

/// Chooses the bytes to send of a file of `file_len` bytes.
pub fn select(range: Option<ByteRange>, file_len: u64) -> Selection {
    let Some(range) = range else {
        return Selection::Whole;
    };
    if file_len == 0 {
        return Selection::Unsatisfiable;
    }
    let file_last = file_len - 1;
    match range {
        ByteRange::FromTo { first, last } if first <= file_last => {
            Selection::Partial { first, last: last.min(file_last) }
        }
        ByteRange::From { first } if first <= file_last => Selection::Partial { first, last: file_last },
        ByteRange::Suffix { length } if length > 0 => {
            Selection::Partial { first: file_len - length.min(file_len), last: file_last }
        }
        _ => Selection::Unsatisfiable,
    }
}

/// Digits only: `u64::from_str` would also take a leading `+`.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(header_value: &str, file_len: u64, expect: Selection) {
        let actual = select(parse_range(header_value), file_len);
        assert_eq!(actual, expect, "Range: {header_value:?} on {file_len} bytes");
    }

    #[test]
    fn ranges_select_bytes() {
        check("bytes=0-99", 1000, Selection::Partial { first: 0, last: 99 });
        check("bytes=0-0", 1000, Selection::Partial { first: 0, last: 0 });
        check("bytes=990-2000", 1000, Selection::Partial { first: 990, last: 999 });
        check("bytes=500-", 1000, Selection::Partial { first: 500, last: 999 });
        check("bytes=-100", 1000, Selection::Partial { first: 900, last: 999 });
        check("bytes=-5000", 1000, Selection::Partial { first: 0, last: 999 });
        check(" bytes=1-2 ", 10, Selection::Partial { first: 1, last: 2 });
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        check("bytes=1000-", 1000, Selection::Unsatisfiable);
        check("bytes=1000-1001", 1000, Selection::Unsatisfiable);
        check("bytes=-0", 1000, Selection::Unsatisfiable);
        check("bytes=0-0", 0, Selection::Unsatisfiable);
        check("bytes=-1", 0, Selection::Unsatisfiable);
    }

    #[test]
    fn malformed_or_multiple_ranges_are_ignored() {
        check("bytes=0-1,5-6", 1000, Selection::Whole);
        check("bytes=9-1", 1000, Selection::Whole);
        check("bytes=-", 1000, Selection::Whole);
        check("bytes=a-b", 1000, Selection::Whole);
        check("bytes=+1-2", 1000, Selection::Whole);
        check("items=0-1", 1000, Selection::Whole);
        check("bytes=99999999999999999999-", 1000, Selection::Whole);
        check("", 1000, Selection::Whole);
    }
}
