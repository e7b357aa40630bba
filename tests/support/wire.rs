//! SSE text on the wire: its blocks and fields, the framing rules of the contract,
//! and parsing with eventsource-stream.

use std::convert::Infallible;

use bytes::Bytes;

/// Splits SSE text into its blocks (events or comments), each without its final
/// blank line. Panics if the text does not end with a complete block.
pub(crate) fn blocks(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    assert!(
        text.ends_with("\n\n"),
        "SSE text does not end with a blank line: {:?}",
        &text[text.len().saturating_sub(80)..]
    );
    text[..text.len() - 2].split("\n\n").collect()
}

/// Whether a block is a comment-only block (a comment heartbeat).
pub(crate) fn is_comment(block: &str) -> bool {
    block.lines().all(|line| line.starts_with(':'))
}

/// The value of field `name` in a block, if present (first occurrence).
pub(crate) fn field<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block.lines().find_map(|line| {
        let (n, v) = line.split_once(':').unwrap_or((line, ""));
        (n == name).then(|| v.strip_prefix(' ').unwrap_or(v))
    })
}

/// Asserts the SSE framing rules of the contract on a body: no `\r` anywhere, and the
/// body is a sequence of blocks each ending with an empty line.
pub(crate) fn assert_framing(body: &[u8]) {
    assert!(
        !body.contains(&b'\r'),
        "a \\r on the wire: {:?}",
        String::from_utf8_lossy(body)
    );
    let text = std::str::from_utf8(body).expect("the body is UTF-8");
    for block in blocks(text) {
        assert!(
            !block.is_empty(),
            "an empty block (stray blank line) in {text:?}"
        );
    }
}

/// Response bytes collected into one buffer.
pub(crate) fn concat(chunks: &[Vec<u8>]) -> Vec<u8> {
    chunks.iter().flatten().copied().collect()
}

/// Parses all of `bytes` with eventsource-stream.
pub(crate) async fn parse_all(bytes: Vec<u8>) -> Vec<eventsource_stream::Event> {
    use eventsource_stream::Eventsource;
    use futures_util::TryStreamExt;
    futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(bytes))])
        .eventsource()
        .try_collect()
        .await
        .unwrap()
}

/// Parses `bytes` with eventsource-stream, delivered in two pieces cut at `at` (TCP
/// may cut anywhere, even inside a UTF-8 character).
pub(crate) async fn parse_in_two(bytes: Vec<u8>, at: usize) -> Vec<eventsource_stream::Event> {
    use eventsource_stream::Eventsource as _;
    use futures_util::TryStreamExt as _;
    let (a, b) = bytes.split_at(at.min(bytes.len()));
    let chunks = vec![
        Ok::<_, std::convert::Infallible>(bytes::Bytes::copy_from_slice(a)),
        Ok(bytes::Bytes::copy_from_slice(b)),
    ];
    futures_util::stream::iter(chunks)
        .eventsource()
        .try_collect()
        .await
        .unwrap()
}
