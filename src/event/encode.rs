//! The wire encoder: appends fields to a caller's `BytesMut`.

use bytes::{BufMut, BytesMut};

/// The lines of `value` as a WHATWG parser splits them: on `\n`, `\r\n` and a lone
/// `\r`. There is always at least one line (an empty value is one empty line).
struct Lines<'a> {
    bytes: &'a [u8],
    /// Start of the next line; `None` once the last line was returned.
    start: Option<usize>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.start?;
        let rest = &self.bytes[start..];
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(offset) => {
                let end = start + offset;
                let crlf = self.bytes[end] == b'\r' && self.bytes.get(end + 1) == Some(&b'\n');
                self.start = Some(end + 1 + usize::from(crlf));
                Some(&rest[..offset])
            }
            None => {
                self.start = None;
                Some(rest)
            }
        }
    }
}

fn lines(value: &str) -> Lines<'_> {
    byte_lines(value.as_bytes())
}

fn byte_lines(bytes: &[u8]) -> Lines<'_> {
    Lines {
        bytes,
        start: Some(0),
    }
}

/// Appends `name: value\n` once per line of `value`, splitting on `\n`, `\r\n` and a
/// lone `\r` exactly where a WHATWG parser would. An empty line is written as `name:\n`.
///
/// With an empty `name` this writes comment lines (`: text`).
pub(crate) fn put_lines(buf: &mut BytesMut, name: &[u8], value: &str) {
    for line in lines(value) {
        put_line(buf, name, line);
    }
}

/// [`put_lines`] for bytes (the line breaks are ASCII, so bytes split as text does).
pub(crate) fn put_byte_lines(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    for line in byte_lines(value) {
        put_line(buf, name, line);
    }
}

/// Exact number of bytes [`put_lines`] appends.
pub(crate) fn lines_len(name: &[u8], value: &str) -> usize {
    lines(value).map(|line| line_len(name, line.len())).sum()
}

/// Appends one field line whose value is known to hold no line break.
#[inline]
pub(crate) fn put_line(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.reserve(line_len(name, value.len()));
    buf.put_slice(name);
    if value.is_empty() {
        buf.put_u8(b':');
    } else {
        buf.put_slice(b": ");
        buf.put_slice(value);
    }
    buf.put_u8(b'\n');
}

/// Appends one field line whose value is the decimal number `n` (`retry`, a numeric
/// `id`).
#[inline]
pub(crate) fn put_number(buf: &mut BytesMut, name: &[u8], n: u64) {
    let mut digits = [0; 20];
    put_line(buf, name, decimal(n, &mut digits));
}

#[inline]
pub(crate) const fn line_len(name: &[u8], value_len: usize) -> usize {
    if value_len == 0 {
        name.len() + 2
    } else {
        name.len() + 3 + value_len
    }
}

/// Decimal digits of `n` into a stack buffer; returns the used tail.
pub(crate) fn decimal(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(name: &str, value: &str) -> String {
        let mut buf = BytesMut::new();
        put_lines(&mut buf, name.as_bytes(), value);
        assert_eq!(buf.len(), lines_len(name.as_bytes(), value), "{value:?}");
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn splits_on_every_line_ending() {
        assert_eq!(lines("data", "a\nb"), "data: a\ndata: b\n");
        assert_eq!(lines("data", "a\r\nb"), "data: a\ndata: b\n");
        assert_eq!(lines("data", "a\rb"), "data: a\ndata: b\n");
        assert_eq!(lines("data", "a\r\rb"), "data: a\ndata:\ndata: b\n");
        assert_eq!(lines("data", "a\n\rb"), "data: a\ndata:\ndata: b\n");
        assert_eq!(lines("data", "\r\n"), "data:\ndata:\n");
        assert_eq!(lines("data", ""), "data:\n");
        assert_eq!(lines("data", " lead"), "data:  lead\n");
        assert_eq!(lines("", "c\nd"), ": c\n: d\n");
    }

    #[test]
    fn decimal_digits() {
        let mut out = [0; 20];
        assert_eq!(decimal(0, &mut out), b"0");
        assert_eq!(decimal(1500, &mut out), b"1500");
        assert_eq!(decimal(u64::MAX, &mut out), b"18446744073709551615");
    }
}
