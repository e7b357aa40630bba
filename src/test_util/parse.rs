//! The WHATWG event-stream parser ("Interpreting an event stream", HTML Living
//! Standard §9.2.6), fed with bytes as they arrive, that also keeps the comment blocks
//! `EventSource` throws away (they are the heartbeats).

use std::{collections::VecDeque, fmt, time::Duration};

/// An event as `EventSource` dispatches it: a `MessageEvent` with its type, data and
/// `lastEventId`.
///
/// ```
/// use tower_sse::test_util::MessageEvent;
///
/// let event = MessageEvent::new("hello").with_event("greeting").with_id("7");
/// assert_eq!(event.event(), "greeting");
/// assert_eq!(event.data(), "hello");
/// assert_eq!(event.id(), "7");
/// // No `event:` field: the type is "message".
/// assert_eq!(MessageEvent::new("x").event(), "message");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageEvent {
    event: String,
    data: String,
    id: String,
}

impl MessageEvent {
    /// An event of type `message` with `data` and an empty `lastEventId`: what
    /// `data: <data>` on a fresh stream dispatches. For comparisons in tests.
    ///
    /// ```
    /// use tower_sse::test_util::MessageEvent;
    ///
    /// assert_eq!(MessageEvent::new("a\nb").data(), "a\nb");
    /// ```
    pub fn new(data: impl Into<String>) -> Self {
        Self {
            event: "message".to_owned(),
            data: data.into(),
            id: String::new(),
        }
    }

    /// The same event with type `event` (an `event:` field).
    ///
    /// ```
    /// use tower_sse::test_util::MessageEvent;
    ///
    /// assert_eq!(MessageEvent::new("").with_event("ping").event(), "ping");
    /// ```
    pub fn with_event(mut self, event: impl Into<String>) -> Self {
        self.event = event.into();
        self
    }

    /// The same event with `lastEventId` `id`.
    ///
    /// ```
    /// use tower_sse::test_util::MessageEvent;
    ///
    /// assert_eq!(MessageEvent::new("x").with_id("41").id(), "41");
    /// ```
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The event's type: its `event:` field, or `message`.
    ///
    /// ```
    /// # use tower_sse::test_util::MessageEvent;
    /// assert_eq!(MessageEvent::new("x").event(), "message");
    /// ```
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The event's data: its `data:` lines joined with `\n`.
    ///
    /// ```
    /// # use tower_sse::test_util::MessageEvent;
    /// assert_eq!(MessageEvent::new("x").data(), "x");
    /// ```
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The stream's last event id when the event was dispatched (`lastEventId`): the
    /// event's own `id:` field, or the last one before it on the stream.
    ///
    /// ```
    /// # use tower_sse::test_util::MessageEvent;
    /// assert_eq!(MessageEvent::new("x").id(), "");
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for MessageEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event `{}` (id {:?}): {:?}",
            self.event, self.id, self.data
        )
    }
}

/// One thing read from an event stream: an event, or a block of comments only.
///
/// ```
/// use tower_sse::test_util::{Item, MessageEvent};
///
/// let item = Item::Comment(String::new()); // `:\n\n`, the layer's default heartbeat
/// assert!(item.is_comment());
/// assert_eq!(Item::Event(MessageEvent::new("x")).event(), Some(&MessageEvent::new("x")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Item {
    /// An event `EventSource` dispatches.
    Event(MessageEvent),
    /// A block of comment lines and nothing else, such as a heartbeat: the text of
    /// each line after its `:` (and one space), joined with `\n`. `EventSource` never
    /// shows these.
    Comment(String),
}

impl Item {
    /// Whether this is a comment block.
    ///
    /// ```
    /// # use tower_sse::test_util::Item;
    /// assert!(Item::Comment("keep-alive".into()).is_comment());
    /// ```
    pub fn is_comment(&self) -> bool {
        matches!(self, Self::Comment(_))
    }

    /// The event, if this is one.
    ///
    /// ```
    /// # use tower_sse::test_util::{Item, MessageEvent};
    /// assert_eq!(Item::Comment(String::new()).event(), None);
    /// ```
    pub fn event(&self) -> Option<&MessageEvent> {
        match self {
            Self::Event(event) => Some(event),
            Self::Comment(_) => None,
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a blank line finished: the item it dispatched, if any, and the stream's last
/// event id and reconnection time as of then (what a reader that has read up to here
/// shows).
#[derive(Debug)]
pub(crate) struct Dispatch {
    pub(crate) item: Option<Item>,
    pub(crate) last_event_id: String,
    pub(crate) retry: Option<Duration>,
}

/// The parser's state: bytes of an unfinished line, the block being read, and the
/// stream's last event id and reconnection time.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    /// Bytes after the last line break.
    line: Vec<u8>,
    /// Whether the start of the stream (and a BOM there) is behind us.
    started: bool,
    /// The last byte was a `\r`: a `\n` right after it ends no line.
    after_cr: bool,
    data: String,
    event: String,
    id_buffer: String,
    last_event_id: String,
    retry: Option<Duration>,
    /// The current block's comment lines, and whether it had any field line.
    comments: Vec<String>,
    fields: bool,
    ready: VecDeque<Dispatch>,
}

impl Parser {
    /// Reads `bytes`, the next piece of the stream (cut anywhere).
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        if !self.started {
            self.line.extend_from_slice(bytes);
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return; // maybe a BOM: wait for more
            }
            self.started = true;
            let held = std::mem::take(&mut self.line);
            let rest = held.strip_prefix(BOM).unwrap_or(&held);
            return self.feed_lines(rest);
        }
        if bytes.is_empty() {
            return;
        }
        if self.after_cr && bytes[0] == b'\n' {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        self.feed_lines(bytes);
    }

    fn feed_lines(&mut self, mut bytes: &[u8]) {
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            self.line.extend_from_slice(&bytes[..end]);
            let line = std::mem::take(&mut self.line);
            self.process(&String::from_utf8_lossy(&line));
            self.line = line;
            self.line.clear();
            let crlf = bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n');
            if bytes[end] == b'\r' && end + 1 == bytes.len() {
                self.after_cr = true;
            }
            bytes = &bytes[end + 1 + usize::from(crlf)..];
        }
        self.line.extend_from_slice(bytes);
    }

    /// One line, without its line break.
    fn process(&mut self, line: &str) {
        if line.is_empty() {
            return self.dispatch();
        }
        if let Some(comment) = line.strip_prefix(':') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            return self.comments.push(comment.to_owned());
        }
        self.fields = true;
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }

    /// The blank line: dispatch the event (if it has data) or the comment block.
    fn dispatch(&mut self) {
        self.last_event_id.clone_from(&self.id_buffer);
        let comments = std::mem::take(&mut self.comments);
        let fields = std::mem::take(&mut self.fields);
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        let item = if !data.is_empty() {
            data.pop(); // the last `\n`
            Some(Item::Event(MessageEvent {
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
                id: self.last_event_id.clone(),
            }))
        } else if !fields && !comments.is_empty() {
            Some(Item::Comment(comments.join("\n")))
        } else {
            None
        };
        self.ready.push_back(Dispatch {
            item,
            last_event_id: self.last_event_id.clone(),
            retry: self.retry,
        });
    }

    /// What the next blank line finished, if any.
    pub(crate) fn pop(&mut self) -> Option<Dispatch> {
        self.ready.pop_front()
    }

    /// Whether the stream so far ends inside a block (an event or comment that a
    /// blank line has not finished yet), which `EventSource` would discard at the end.
    pub(crate) fn in_block(&self) -> bool {
        let bom_only = !self.started && BOM.starts_with(&self.line);
        (!self.line.is_empty() && !bom_only) || self.fields || !self.comments.is_empty()
    }

    /// The reconnection time set by the last valid `retry:` read so far, finished
    /// block or not (WHATWG sets it as soon as the field is read).
    pub(crate) fn retry(&self) -> Option<Duration> {
        self.retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatches(pieces: &[&[u8]]) -> (Vec<Dispatch>, Parser) {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for piece in pieces {
            parser.feed(piece);
            while let Some(dispatch) = parser.pop() {
                out.push(dispatch);
            }
        }
        (out, parser)
    }

    fn items(pieces: &[&[u8]]) -> (Vec<Item>, Parser) {
        let (dispatches, parser) = dispatches(pieces);
        (
            dispatches.into_iter().filter_map(|d| d.item).collect(),
            parser,
        )
    }

    fn event(data: &str) -> Item {
        Item::Event(MessageEvent::new(data))
    }

    #[test]
    fn lines_end_with_lf_crlf_or_a_lone_cr_even_across_pieces() {
        let whole: &[u8] = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r";
        let expected = vec![event("a\nb\nc"), event("d")];
        assert_eq!(items(&[whole]).0, expected);
        for cut in 0..=whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(items(&[a, b]).0, expected, "cut at {cut}");
            assert_eq!(items(&[a, b"", b]).0, expected, "cut at {cut}");
        }
    }

    #[test]
    fn comment_blocks_are_items_and_comments_inside_events_are_not() {
        let (got, _) = items(&[b":\n\n: keep-alive\n: still here\n\n: c\ndata: x\n\n"]);
        assert_eq!(
            got,
            vec![
                Item::Comment(String::new()),
                Item::Comment("keep-alive\nstill here".into()),
                event("x"),
            ]
        );
    }

    #[test]
    fn ids_persist_retry_without_data_counts_and_bad_values_are_ignored() {
        let (got, parser) = dispatches(&[
            b"id: 4\ndata: a\n\ndata: b\n\nid: 5\n\nretry: 1500\n\nretry: 1x\nid: a\0b\n\ndata: c\n\n",
        ]);
        let with_id = |data: &str, id: &str| Some(Item::Event(MessageEvent::new(data).with_id(id)));
        let ms = |ms| Some(Duration::from_millis(ms));
        let got: Vec<_> = got
            .into_iter()
            .map(|d| (d.item, d.last_event_id, d.retry))
            .collect();
        assert_eq!(
            got,
            vec![
                (with_id("a", "4"), "4".into(), None),
                (with_id("b", "4"), "4".into(), None),
                (None, "5".into(), None),
                (None, "5".into(), ms(1500)),
                (None, "5".into(), ms(1500)),
                (with_id("c", "5"), "5".into(), ms(1500)),
            ]
        );
        assert_eq!(parser.retry(), ms(1500));
    }

    #[test]
    fn field_forms_and_event_types() {
        let (got, _) = items(&[b"data\ndata:x\ndata:  y\nevent: ping\nfoo: bar\n\n"]);
        assert_eq!(
            got,
            vec![Item::Event(MessageEvent::new("\nx\n y").with_event("ping"))]
        );
    }

    #[test]
    fn a_bom_at_the_start_is_skipped_even_in_pieces_and_utf8_may_be_cut() {
        let whole = "\u{feff}data: é€\n\n".as_bytes();
        for cut in 0..=whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(items(&[a, b]).0, vec![event("é€")], "cut at {cut}");
        }
    }

    #[test]
    fn an_unfinished_block_is_not_dispatched_and_is_reported() {
        let (got, parser) = items(&[b"data: a\n\ndata: b\n"]);
        assert_eq!(got, vec![event("a")]);
        assert!(parser.in_block());
        let (_, parser) = items(&[b"data: a\n\n"]);
        assert!(!parser.in_block());
        let (_, parser) = items(&[b""]);
        assert!(!parser.in_block());
    }
}
