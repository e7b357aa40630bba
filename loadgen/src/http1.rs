//! HTTP/1.x responses: the head (status, content type, framing) and the chunked
//! decoder. Knows nothing about SSE: the body's bytes go to a callback.

/// A response head longer than this is an error.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Where a connection's response is.
pub(crate) enum Framing {
    /// Reading the response head (the bytes so far).
    Head(Vec<u8>),
    Chunked(Chunk),
    /// No `Transfer-Encoding`: the body runs to the end of the connection. Also an h2c
    /// stream (DATA frames carry the body).
    ToEnd,
}

#[derive(Clone, Copy)]
pub(crate) enum Chunk {
    /// Hex digits of the chunk size so far.
    Size(u64),
    /// Chunk extensions, up to the end of the size line.
    Ext(u64),
    /// Bytes left in the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// The last chunk was seen.
    Done,
}

/// What a response must be to be measured: 200, `text/event-stream`. The message says
/// what it was instead.
pub(crate) fn check_answer(status: u16, content_type: Option<&str>) -> Result<(), String> {
    if status != 200 {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map_or_else(String::new, |r| format!(" {r}"));
        return Err(format!("the server answered {status}{reason}, not 200"));
    }
    match content_type {
        Some(t)
            if t.trim()
                .to_ascii_lowercase()
                .starts_with("text/event-stream") =>
        {
            Ok(())
        }
        Some(t) => Err(format!("content-type is {t:?}, not text/event-stream")),
        None => Err("no content-type (expected text/event-stream)".into()),
    }
}

/// The body's framing, from a complete response head, or why it cannot be measured.
pub(crate) fn parse_head(head: &[u8]) -> Result<Framing, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut content_type = None;
    let mut length = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = true;
        }
    }
    check_answer(status, content_type.as_deref())?;
    if length && !chunked {
        return Err("an SSE response with content-length (a finite body)".into());
    }
    Ok(if chunked {
        Framing::Chunked(Chunk::Size(0))
    } else {
        Framing::ToEnd
    })
}

/// Decodes chunked framing from `state`, handing each piece of chunk data to `body`.
/// `Ok(true)`: the last chunk came.
pub(crate) fn dechunk(
    state: &mut Chunk,
    mut data: &[u8],
    mut body: impl FnMut(&[u8]) -> Result<(), &'static str>,
) -> Result<bool, &'static str> {
    while !data.is_empty() {
        match *state {
            Chunk::Data(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                let (now, rest) = data.split_at(take);
                body(now)?;
                data = rest;
                let left = left - take as u64;
                *state = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            Chunk::Done => return Ok(true),
            _ => {}
        }
        let b = data[0];
        data = &data[1..];
        *state = next(*state, b)?;
    }
    Ok(matches!(state, Chunk::Done))
}

/// The decoder's next state after a framing byte.
fn next(state: Chunk, b: u8) -> Result<Chunk, &'static str> {
    Ok(match (state, b) {
        (Chunk::Size(n) | Chunk::Ext(n), b'\n') => {
            if n == 0 {
                Chunk::Done
            } else {
                Chunk::Data(n)
            }
        }
        (Chunk::Size(n), b'\r' | b';' | b' ' | b'\t') | (Chunk::Ext(n), _) => Chunk::Ext(n),
        (Chunk::Size(n), _) => {
            let digit = (b as char).to_digit(16).ok_or("bad chunk size")?;
            if n >> 60 != 0 {
                return Err("chunk size too large");
            }
            Chunk::Size(n << 4 | u64::from(digit))
        }
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataCr | Chunk::DataLf, b'\n') => Chunk::Size(0),
        (Chunk::DataCr | Chunk::DataLf, _) => return Err("no CRLF after chunk data"),
        (Chunk::Data(_) | Chunk::Done, _) => state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n";
        assert!(matches!(parse_head(ok), Ok(Framing::ToEnd)));
        let err = |h: &[u8]| parse_head(h).err().unwrap_or_default();
        assert_eq!(
            err(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            "the server answered 404 Not Found, not 200"
        );
        assert_eq!(
            err(b"HTTP/1.0 200 OK\r\ncontent-type: text/html\r\n\r\n"),
            "content-type is \"text/html\", not text/event-stream"
        );
    }
}
