//! Just enough RESP2 for the live (Pub/Sub) connection: flat replies only (a push is an
//! array of bulk strings and integers), read from a buffered stream.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _};

/// The longest bulk string accepted (an event and its id), against a garbled length.
const MAX_BULK: usize = 512 * 1024 * 1024;

/// One RESP2 value of the live connection (arrays hold no arrays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resp {
    /// `+OK`, `+PONG`.
    Simple(Vec<u8>),
    /// `-ERR …`, `-MOVED …`.
    Error(String),
    /// `:3`.
    Int(i64),
    /// `$n`, `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` of flat values.
    Array(Vec<Resp>),
}

impl Resp {
    /// The bytes of a bulk or simple string.
    pub(super) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bulk(Some(bytes)) | Self::Simple(bytes) => Some(bytes),
            _ => None,
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("redis: {what}"))
}

async fn line(reader: &mut (impl AsyncBufRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(invalid("line without CRLF"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn int(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("not a number"))
}

/// One value that is not an array.
async fn scalar(reader: &mut (impl AsyncBufRead + Unpin), head: Vec<u8>) -> io::Result<Resp> {
    let (kind, rest) = head.split_first().ok_or_else(|| invalid("empty line"))?;
    Ok(match kind {
        b'+' => Resp::Simple(rest.to_vec()),
        b'-' => Resp::Error(String::from_utf8_lossy(rest).into_owned()),
        b':' => Resp::Int(int(rest)?),
        b'$' => {
            let Ok(len) = usize::try_from(int(rest)?) else {
                return Ok(Resp::Bulk(None));
            };
            if len > MAX_BULK {
                return Err(invalid("bulk string too long"));
            }
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes).await?;
            if !bytes.ends_with(b"\r\n") {
                return Err(invalid("bulk string without CRLF"));
            }
            bytes.truncate(len);
            Resp::Bulk(Some(bytes))
        }
        _ => return Err(invalid("unexpected reply type")),
    })
}

/// Reads one reply.
pub(super) async fn read(reader: &mut (impl AsyncBufRead + Unpin)) -> io::Result<Resp> {
    let head = line(reader).await?;
    let Some(count) = head.strip_prefix(b"*") else {
        return scalar(reader, head).await;
    };
    let count = usize::try_from(int(count)?).unwrap_or(0);
    let mut items = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        let head = line(reader).await?;
        if head.starts_with(b"*") {
            return Err(invalid("nested array on the live connection"));
        }
        items.push(scalar(reader, head).await?);
    }
    Ok(Resp::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(mut bytes: &[u8]) -> Vec<Resp> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(read(&mut bytes).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn pushes_and_replies_parse() {
        let wire = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\n1-0\nx\r\n\
                     +OK\r\n-MOVED 1 h:1\r\n:7\r\n$-1\r\n";
        let values = parse(wire).await;
        assert_eq!(
            values[0],
            Resp::Array(vec![
                Resp::Bulk(Some(b"message".to_vec())),
                Resp::Bulk(Some(b"ch".to_vec())),
                Resp::Bulk(Some(b"1-0\nx".to_vec())),
            ])
        );
        assert_eq!(values[1].bytes(), Some(&b"OK"[..]));
        assert_eq!(values[2], Resp::Error("MOVED 1 h:1".to_owned()));
        assert_eq!(values[3], Resp::Int(7));
        assert_eq!(values[4], Resp::Bulk(None));
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"?\r\n"[..],
            b"$5\r\nab\r\n",
            b"*1\r\n*1\r\n:1\r\n",
            b":x\r\n",
            b"+OK\n",
            b"$999999999999\r\n",
        ] {
            let mut input = bad;
            assert!(read(&mut input).await.is_err(), "{bad:?}");
        }
    }
}
