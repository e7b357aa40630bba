//! [`DataEvent`]: an event whose data is written straight into the outgoing frame.
//!
//! An [`Event`](super::Event) owns its data as text, so a handler that formats a
//! number or serializes a value first makes a `String`, which the layer then copies
//! into the frame. A `DataEvent` keeps the value itself (anything `Display`, anything
//! serde can serialize, bytes, or a closure) and writes it when the layer encodes the
//! event, straight into the frame, through a [`DataWriter`] that splits lines exactly
//! as [`Event::data`](super::Event::data) does.

use std::{borrow::Cow, fmt, io, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    check_event, check_id, encode, sealed, DataError, Encode, EncodedEvent, EventError, Text,
};

/// An event whose `data` is written into the outgoing frame when the layer sends it:
/// no `String` per event, no copy but the one into the frame.
///
/// Make one with [`DataEvent::display`] (a `Display` value, such as a number or a
/// type of yours), [`DataEvent::json`] (feature `json`: serialized by serde straight
/// into the frame), [`DataEvent::bytes`] (copied once), [`DataEvent::from_fn`] (a
/// closure that writes with `write!`), [`DataEvent::write_with`] (a value and a `fn`)
/// or [`DataEvent::custom`] (a type of yours that implements [`WriteData`]: the
/// fastest, and a type a hand-written `Stream` can name). Then set `id`, `event` and
/// `retry` as on an
/// [`Event`](crate::Event); [`DataEvent::id`] and [`DataEvent::event`] refuse the same
/// values with the same [`EventError`].
///
/// The data goes through the same rules as `Event::data`: a `\n`, a `\r\n` or a lone
/// `\r` in what is written starts a new `data:` line, also when a `\r` ends one write
/// and the `\n` starts the next. The bytes on the wire are exactly those of an `Event`
/// with the same fields and the data as one string.
///
/// A source stream may yield `DataEvent`s like `Event`s. If the data fails to write
/// (its `Display` returns an error, serde refuses the value), nothing of the event is
/// sent and the layer logs the [`DataError`] at `warn`; [`Event::json_data`]
/// reports such an error when the event is built instead.
///
/// [`Event::json_data`]: crate::Event
///
/// # Example
///
/// ```
/// use std::fmt::Write as _;
/// use tower_sse::event::DataEvent;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A number, formatted into the frame.
/// let event = DataEvent::display(42).id_u64(7).event("count")?;
/// assert_eq!(
///     event.encode()?.as_bytes(),
///     &b"id: 7\nevent: count\ndata: 42\n\n"[..],
/// );
///
/// // `write!` with the value moved into the closure.
/// let (seq, token) = (3_u64, "hi");
/// let event = DataEvent::from_fn(move |w| write!(w, r#"{{"seq":{seq},"token":"{token}"}}"#));
/// assert_eq!(
///     event.encode()?.as_bytes(),
///     &b"data: {\"seq\":3,\"token\":\"hi\"}\n\n"[..],
/// );
///
/// // Line breaks start new `data:` lines, as with `Event::data`.
/// let event = DataEvent::bytes(&b"one\r\ntwo"[..]);
/// assert_eq!(event.encode()?.as_bytes(), &b"data: one\ndata: two\n\n"[..]);
/// # Ok(())
/// # }
/// ```
///
/// As a source (the layer encodes each event into the frame it is filling):
///
/// ```
/// use std::convert::Infallible;
/// use tower_sse::{event::DataEvent, SseResponse};
///
/// let events = tokio_stream::iter((0_u64..3).map(|n| Ok::<_, Infallible>(DataEvent::display(n))));
/// let response = SseResponse::new(events);
/// # let _ = response;
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct DataEvent<D> {
    id: Option<Id>,
    event: Option<Text>,
    retry: Option<u64>,
    data: D,
}

/// An `id`: text checked when set, or a number written as digits when encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Text(Text),
    Number(u64),
}

impl<T: fmt::Display> DataEvent<DisplayData<T>> {
    /// An event whose data is `value` as `Display` writes it, formatted into the frame.
    ///
    /// ```
    /// let event = tower_sse::event::DataEvent::display(1.5);
    /// assert_eq!(event.encode().unwrap().as_bytes(), &b"data: 1.5\n\n"[..]);
    /// ```
    pub fn display(value: T) -> Self {
        Self::with_data(DisplayData(value))
    }
}

#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
impl<T: serde::Serialize> DataEvent<JsonData<T>> {
    /// An event whose data is `value` as compact JSON, serialized by `serde_json`
    /// straight into the frame. The bytes are those of
    /// [`Event::json_data`](crate::Event::json_data).
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Token<'a> {
    ///     token: &'a str,
    /// }
    ///
    /// let event = tower_sse::event::DataEvent::json(Token { token: "hi" });
    /// assert_eq!(event.encode().unwrap().as_bytes(), &b"data: {\"token\":\"hi\"}\n\n"[..]);
    /// ```
    pub fn json(value: T) -> Self {
        Self::with_data(JsonData(value))
    }
}

impl<B: AsRef<[u8]>> DataEvent<BytesData<B>> {
    /// An event whose data is `bytes`, copied into the frame once: a `&'static str`,
    /// a `String`, [`Bytes`] received from elsewhere…
    ///
    /// The bytes should be UTF-8: an SSE client decodes the stream as UTF-8 and reads
    /// anything else as U+FFFD.
    ///
    /// ```
    /// let upstream = bytes::Bytes::from_static(b"{\"n\":1}");
    /// let event = tower_sse::event::DataEvent::bytes(upstream);
    /// assert_eq!(event.encode().unwrap().as_bytes(), &b"data: {\"n\":1}\n\n"[..]);
    /// ```
    pub fn bytes(bytes: B) -> Self {
        Self::with_data(BytesData(bytes))
    }
}

impl<F: Fn(&mut DataWriter<'_>) -> fmt::Result> DataEvent<FnData<F>> {
    /// An event whose data `write` writes, with `write!` or the [`DataWriter`]'s
    /// methods, when the event is encoded. `Fn`, not `FnOnce`: an event may be encoded
    /// more than once (see [`DataEvent::encode`]).
    ///
    /// ```
    /// use std::fmt::Write as _;
    ///
    /// let n = 7;
    /// let event = tower_sse::event::DataEvent::from_fn(move |w| write!(w, "n={n}"));
    /// assert_eq!(event.encode().unwrap().as_bytes(), &b"data: n=7\n\n"[..]);
    /// ```
    pub fn from_fn(write: F) -> Self {
        Self::with_data(FnData(write))
    }
}

impl<T> DataEvent<WriteWith<T>> {
    /// An event whose data `write` writes from `value` when the event is encoded: a
    /// closure that captures nothing (it coerces to the `fn` pointer) and the value it
    /// reads. Like [`DataEvent::from_fn`], with a type that can be named, for a
    /// `Stream` implemented by hand (`type Item = Result<DataEvent<WriteWith<u64>>, _>`)
    /// and without the `Display` machinery of [`DataEvent::display`].
    ///
    /// ```
    /// use std::fmt::Write as _;
    /// use tower_sse::event::{DataEvent, DataWriter, WriteWith};
    ///
    /// fn tick(n: u64) -> DataEvent<WriteWith<u64>> {
    ///     DataEvent::write_with(n, |n, w: &mut DataWriter<'_>| write!(w, "{{\"n\":{n}}}"))
    /// }
    /// assert_eq!(tick(7).encode().unwrap().as_bytes(), &b"data: {\"n\":7}\n\n"[..]);
    /// ```
    pub fn write_with(value: T, write: fn(&T, &mut DataWriter<'_>) -> fmt::Result) -> Self {
        Self::with_data(WriteWith { value, write })
    }
}

impl<T: WriteData> DataEvent<CustomData<T>> {
    /// An event whose data `value` writes itself ([`WriteData`]) when the event is
    /// encoded. The fastest way to put data straight into the frame: the type can be
    /// named (for a `Stream` implemented by hand), and the write is compiled into the
    /// layer's encoder, with no `fn` pointer or `dyn` in between, so that the
    /// compiler sees the pieces it writes.
    ///
    /// ```
    /// use std::fmt::{self, Write as _};
    /// use tower_sse::event::{CustomData, DataEvent, DataWriter, WriteData};
    ///
    /// struct Tick(u64);
    ///
    /// impl WriteData for Tick {
    ///     fn write_data(&self, w: &mut DataWriter<'_>) -> fmt::Result {
    ///         w.write_str("{\"n\":")?;
    ///         w.write_str(itoa::Buffer::new().format(self.0))?;
    ///         w.write_str("}")
    ///     }
    /// }
    ///
    /// let tick: DataEvent<CustomData<Tick>> = DataEvent::custom(Tick(7));
    /// assert_eq!(tick.encode().unwrap().as_bytes(), &b"data: {\"n\":7}\n\n"[..]);
    /// ```
    pub fn custom(value: T) -> Self {
        Self::with_data(CustomData(value))
    }
}

impl<D> DataEvent<D> {
    const fn with_data(data: D) -> Self {
        Self {
            id: None,
            event: None,
            retry: None,
            data,
        }
    }

    /// Sets the `id` field, as [`Event::id`](crate::Event::id) does.
    ///
    /// # Errors
    ///
    /// [`EventErrorKind::IdLineBreak`](crate::EventErrorKind::IdLineBreak) if `id`
    /// contains `\n` or `\r`, [`EventErrorKind::IdNul`](crate::EventErrorKind::IdNul)
    /// if it contains a NUL character.
    ///
    /// ```
    /// use tower_sse::event::DataEvent;
    ///
    /// assert!(DataEvent::display(1).id("a-1").is_ok());
    /// assert!(DataEvent::display(1).id("a\nb").is_err());
    /// ```
    pub fn id(mut self, id: impl Into<Cow<'static, str>>) -> Result<Self, EventError> {
        let id = id.into();
        check_id(&id)?;
        self.id = Some(Id::Text(id));
        Ok(self)
    }

    /// Sets the `id` field to a number, written as digits when the event is encoded
    /// (no allocation). Cannot fail.
    ///
    /// ```
    /// let event = tower_sse::event::DataEvent::display("x").id_u64(42);
    /// assert_eq!(event.encode().unwrap().as_bytes(), &b"id: 42\ndata: x\n\n"[..]);
    /// ```
    pub fn id_u64(mut self, id: u64) -> Self {
        self.id = Some(Id::Number(id));
        self
    }

    /// Sets the `event` field, as [`Event::event`](crate::Event::event) does.
    ///
    /// # Errors
    ///
    /// [`EventErrorKind::EventLineBreak`](crate::EventErrorKind::EventLineBreak) if
    /// `event` contains `\n` or `\r`.
    ///
    /// ```
    /// use tower_sse::event::DataEvent;
    ///
    /// assert!(DataEvent::display(1).event("tick").is_ok());
    /// assert!(DataEvent::display(1).event("tick\r").is_err());
    /// ```
    pub fn event(mut self, event: impl Into<Cow<'static, str>>) -> Result<Self, EventError> {
        let event = event.into();
        check_event(&event)?;
        self.event = Some(event);
        Ok(self)
    }

    /// Sets the `retry` field, in whole milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// let event = tower_sse::event::DataEvent::display("x").retry(Duration::from_secs(1));
    /// assert_eq!(event.encode().unwrap().as_bytes(), &b"retry: 1000\ndata: x\n\n"[..]);
    /// ```
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The value the data is written from.
    ///
    /// ```
    /// let event = tower_sse::event::DataEvent::display(5);
    /// assert_eq!(event.data().get(), &5);
    /// ```
    pub fn data(&self) -> &D {
        &self.data
    }
}

impl<D: Data> DataEvent<D> {
    /// Appends the encoded event, ending with its blank line, to `buf`: the fields,
    /// then the data written straight into `buf`.
    ///
    /// # Errors
    ///
    /// [`DataError`] if the data failed to write; `buf` is then as it was.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tower_sse::event::DataEvent;
    ///
    /// let mut buf = BytesMut::new();
    /// DataEvent::display(1).encode_to(&mut buf)?;
    /// DataEvent::display(2).encode_to(&mut buf)?;
    /// assert_eq!(&buf[..], b"data: 1\n\ndata: 2\n\n");
    /// # Ok::<(), tower_sse::event::DataError>(())
    /// ```
    pub fn encode_to(&self, buf: &mut BytesMut) -> Result<(), DataError> {
        let before = buf.len();
        if let Some(id) = &self.id {
            match id {
                Id::Text(id) => encode::put_line(buf, b"id", id.as_bytes()),
                Id::Number(n) => encode::put_number(buf, b"id", *n),
            }
        }
        if let Some(event) = &self.event {
            encode::put_line(buf, b"event", event.as_bytes());
        }
        if let Some(retry) = self.retry {
            encode::put_number(buf, b"retry", retry);
        }
        let mut writer = DataWriter::start(buf);
        let written = self.data.write_data(&mut writer);
        writer.finish();
        if written.is_err() {
            buf.truncate(before);
        }
        written
    }

    /// Encodes the event into shareable bytes, for instance to send one event to many
    /// connections.
    ///
    /// # Errors
    ///
    /// [`DataError`] if the data failed to write.
    ///
    /// ```
    /// let encoded = tower_sse::event::DataEvent::display("hi").encode()?;
    /// assert_eq!(encoded.as_bytes(), &b"data: hi\n\n"[..]);
    /// # Ok::<(), tower_sse::event::DataError>(())
    /// ```
    pub fn encode(&self) -> Result<EncodedEvent, DataError> {
        let mut buf = BytesMut::new();
        self.encode_to(&mut buf)?;
        Ok(EncodedEvent::from_encoded(buf.freeze()))
    }
}

impl<D: fmt::Debug> fmt::Debug for DataEvent<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("DataEvent");
        match &self.id {
            Some(Id::Text(id)) => s.field("id", id),
            Some(Id::Number(id)) => s.field("id", id),
            None => &mut s,
        };
        if let Some(event) = &self.event {
            s.field("event", event);
        }
        if let Some(retry) = self.retry {
            s.field("retry_ms", &retry);
        }
        s.field("data", &self.data).finish()
    }
}

impl<D: Data> sealed::Sealed for DataEvent<D> {}

impl<D: Data> Encode for DataEvent<D> {
    #[inline]
    fn encode_to(&self, buf: &mut BytesMut) {
        if let Err(err) = DataEvent::encode_to(self, buf) {
            skipped(&err);
        }
    }

    fn into_bytes(self) -> Bytes {
        let mut buf = BytesMut::new();
        Encode::encode_to(&self, &mut buf);
        buf.freeze()
    }
}

#[cold]
fn skipped(err: &DataError) {
    tracing::warn!(error = %err, "sse event data failed to write; event skipped");
}

/// What a [`DataEvent`] writes its data from: [`DisplayData`], [`JsonData`],
/// [`BytesData`] or [`FnData`]. Sealed: every kind of data goes through a
/// [`DataWriter`], which keeps the framing whatever is written.
pub trait Data: sealed::Sealed {
    /// Writes the data through `w`.
    #[doc(hidden)]
    fn write_data(&self, w: &mut DataWriter<'_>) -> Result<(), DataError>;
}

/// The data of [`DataEvent::display`]: a value written with its `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayData<T>(T);

impl<T> DisplayData<T> {
    /// The value.
    ///
    /// ```
    /// assert_eq!(tower_sse::event::DataEvent::display('x').data().get(), &'x');
    /// ```
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Display> sealed::Sealed for DisplayData<T> {}

impl<T: fmt::Display> Data for DisplayData<T> {
    #[inline]
    fn write_data(&self, w: &mut DataWriter<'_>) -> Result<(), DataError> {
        fmt::write(w, format_args!("{}", self.0)).map_err(|_| DataError::fmt())
    }
}

/// The data of [`DataEvent::json`]: a value serialized as compact JSON.
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonData<T>(T);

#[cfg(feature = "json")]
impl<T> JsonData<T> {
    /// The value.
    ///
    /// ```
    /// let event = tower_sse::event::DataEvent::json([1, 2]);
    /// assert_eq!(event.data().get(), &[1, 2]);
    /// ```
    pub fn get(&self) -> &T {
        &self.0
    }
}

#[cfg(feature = "json")]
impl<T: serde::Serialize> sealed::Sealed for JsonData<T> {}

#[cfg(feature = "json")]
impl<T: serde::Serialize> Data for JsonData<T> {
    #[inline]
    fn write_data(&self, w: &mut DataWriter<'_>) -> Result<(), DataError> {
        serde_json::to_writer(w, &self.0).map_err(DataError::json)
    }
}

/// The data of [`DataEvent::bytes`]: bytes copied into the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BytesData<B>(B);

impl<B> BytesData<B> {
    /// The bytes.
    ///
    /// ```
    /// assert_eq!(*tower_sse::event::DataEvent::bytes("x").data().get(), "x");
    /// ```
    pub fn get(&self) -> &B {
        &self.0
    }
}

impl<B: AsRef<[u8]>> sealed::Sealed for BytesData<B> {}

impl<B: AsRef<[u8]>> Data for BytesData<B> {
    #[inline]
    fn write_data(&self, w: &mut DataWriter<'_>) -> Result<(), DataError> {
        w.write_bytes(self.0.as_ref());
        Ok(())
    }
}

/// The data of [`DataEvent::from_fn`]: a closure that writes it.
#[derive(Clone, Copy)]
pub struct FnData<F>(F);

impl<F> fmt::Debug for FnData<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnData(..)")
    }
}

impl<F> PartialEq for FnData<F> {
    /// Closures cannot be compared: never equal.
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl<F> Eq for FnData<F> {}

impl<F: Fn(&mut DataWriter<'_>) -> fmt::Result> sealed::Sealed for FnData<F> {}

impl<F: Fn(&mut DataWriter<'_>) -> fmt::Result> Data for FnData<F> {
    #[inline]
    fn write_data(&self, w: &mut DataWriter<'_>) -> Result<(), DataError> {
        (self.0)(w).map_err(|_| DataError::fmt())
    }
}

/// The data of [`DataEvent::write_with`]: a value and the function that writes it.
#[derive(Clone, Copy)]
pub struct WriteWith<T> {
    value: T,
    write: fn(&T, &mut DataWriter<'_>) -> fmt::Result,
}

impl<T> WriteWith<T> {
    /// The value.
    ///
    /// ```
    /// use std::fmt::Write as _;
    ///
    /// let event = tower_sse::event::DataEvent::write_with(7_u8, |n, w| write!(w, "{n}"));
    /// assert_eq!(event.data().get(), &7);
    /// ```
    pub fn get(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for WriteWith<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteWith").field(&self.value).finish()
    }
}

impl<T> sealed::Sealed for WriteWith<T> {}

impl<T> Data for WriteWith<T> {
    #[inline]
    fn write_data(&self, w: &mut DataWriter<'_>) -> Result<(), DataError> {
        (self.write)(&self.value, w).map_err(|_| DataError::fmt())
    }
}

/// Data that writes itself into the frame, for [`DataEvent::custom`]: implement it
/// for your own type.
///
/// What it writes gets the `data:` lines of [`Event::data`](crate::Event::data), as
/// everything written through a [`DataWriter`] does: a line break in it cannot end
/// the event early.
///
/// ```
/// use std::fmt::{self, Write as _};
/// use tower_sse::event::{DataEvent, DataWriter, WriteData};
///
/// /// Two lines of text.
/// struct Pair<'a>(&'a str, &'a str);
///
/// impl WriteData for Pair<'_> {
///     fn write_data(&self, w: &mut DataWriter<'_>) -> fmt::Result {
///         write!(w, "{}\n{}", self.0, self.1)
///     }
/// }
///
/// let event = DataEvent::custom(Pair("a", "b"));
/// assert_eq!(event.encode().unwrap().as_bytes(), &b"data: a\ndata: b\n\n"[..]);
/// ```
pub trait WriteData {
    /// Writes the data into `w`.
    ///
    /// # Errors
    ///
    /// A [`fmt::Error`], which skips the event: the frame is left as it was before
    /// the event, [`DataEvent::encode`] returns [`DataError`], and the layer logs it
    /// and goes on with the next event.
    fn write_data(&self, w: &mut DataWriter<'_>) -> fmt::Result;
}

/// The data of [`DataEvent::custom`]: a value that writes itself ([`WriteData`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomData<T>(T);

impl<T> CustomData<T> {
    /// The value.
    ///
    /// ```
    /// use std::fmt;
    /// use tower_sse::event::{DataEvent, DataWriter, WriteData};
    ///
    /// struct Empty;
    /// impl WriteData for Empty {
    ///     fn write_data(&self, _: &mut DataWriter<'_>) -> fmt::Result {
    ///         Ok(())
    ///     }
    /// }
    /// let event = DataEvent::custom(Empty);
    /// assert!(matches!(event.data().get(), Empty));
    /// ```
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T: WriteData> sealed::Sealed for CustomData<T> {}

impl<T: WriteData> Data for CustomData<T> {
    #[inline]
    fn write_data(&self, w: &mut DataWriter<'_>) -> Result<(), DataError> {
        self.0.write_data(w).map_err(|_| DataError::fmt())
    }
}

/// Writes an event's data into the frame. The data gets the `data:` lines of
/// [`Event::data`](crate::Event::data): each `\n`, `\r\n` or lone `\r` in what was
/// written, wherever the writes were cut (a `\r` that ends one write and the `\n`
/// that starts the next are one line break), starts a new `data:` line.
///
/// It implements [`fmt::Write`] (for `write!`) and [`io::Write`] (for serializers);
/// neither ever fails. Given to the closure of [`DataEvent::from_fn`] and to
/// [`WriteData::write_data`].
///
/// How: each write is looked at where the caller holds it, for a byte below 0x0E
/// (`\n` and `\r` are; a few rare control bytes too), then copied straight into the
/// frame after `data: `. Data with no such byte, nearly all data, is done at that.
/// Only data that has one is looked at again for real line breaks, then taken out and
/// split into lines (one more copy, the rare case). Looking at the bytes before they
/// are copied, not in the frame after, matters: a wide read of bytes just written in
/// small pieces waits for those writes to land (see BENCHMARKS.md, "Events written
/// into the frame").
///
/// ```
/// use std::fmt::Write as _;
/// use tower_sse::event::DataEvent;
///
/// let event = DataEvent::from_fn(|w| {
///     w.write_str("a\r")?; // the `\r\n` is one line break…
///     w.write_str("\nb")?; // …across two writes
///     w.write_bytes(b"\rc");
///     Ok(())
/// });
/// assert_eq!(event.encode().unwrap().as_bytes(), &b"data: a\ndata: b\ndata: c\n\n"[..]);
/// ```
pub struct DataWriter<'a> {
    buf: &'a mut BytesMut,
    /// Where the data starts in `buf`, after `data: `.
    start: usize,
    /// A byte below 0x0E was written: the data may hold a line break.
    control: bool,
}

impl<'a> DataWriter<'a> {
    /// Starts the first `data:` line.
    #[inline]
    fn start(buf: &'a mut BytesMut) -> Self {
        buf.put_slice(b"data: ");
        let start = buf.len();
        Self {
            buf,
            start,
            control: false,
        }
    }

    /// Ends the event: the data as it was written if it holds no line break (and no
    /// space after `data:` if it is empty), else split into `data:` lines.
    #[inline]
    fn finish(self) {
        let data = &self.buf[self.start..];
        if data.is_empty() {
            self.buf.truncate(self.start - 1);
            self.buf.put_slice(b"\n\n");
        } else if self.control && has_line_break(data) {
            self.split();
        } else {
            self.buf.put_slice(b"\n\n");
        }
    }

    /// Takes the data back out and writes it again as `data:` lines.
    #[cold]
    fn split(self) {
        let data = self.buf[self.start..].to_vec();
        self.buf.truncate(self.start - b"data: ".len());
        encode::put_byte_lines(self.buf, b"data", &data);
        self.buf.put_u8(b'\n');
    }

    /// Writes `bytes`.
    ///
    /// The bytes should be UTF-8 (see [`DataEvent::bytes`]).
    ///
    /// ```
    /// let event = tower_sse::event::DataEvent::from_fn(|w| {
    ///     w.write_bytes(b"one\ntwo");
    ///     Ok(())
    /// });
    /// assert_eq!(event.encode().unwrap().as_bytes(), &b"data: one\ndata: two\n\n"[..]);
    /// ```
    #[inline]
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        // The bytes are looked at where the caller has them, not once written: a wide
        // read of bytes just written in small pieces waits for the writes to land.
        self.control |= below_0x0e(bytes);
        self.buf.put_slice(bytes);
    }
}

/// Whether `bytes` hold a `\n` or a `\r` (the exact look, once [`below_0x0e`] found
/// a byte that may be one).
#[cold]
fn has_line_break(bytes: &[u8]) -> bool {
    memchr::memchr2(b'\n', b'\r', bytes).is_some()
}

/// Whether a byte of `bytes` is below 0x0E: `\n` (0x0A) and `\r` (0x0D) are, and so
/// are a few other control bytes (a tab, say), which [`has_line_break`] tells apart.
///
/// Slices under 16 bytes (a formatter's or a serializer's pieces, often made just
/// before on the stack: a wide read of bytes written in smaller pieces waits for the
/// writes to land) a byte at a time; longer ones eight bytes at a time in a `u64`,
/// without a branch per word, the last word overlapping the one before (a byte looked
/// at twice changes nothing). Over 256 bytes `memchr` looks for the line breaks
/// themselves.
#[inline]
fn below_0x0e(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Non-zero if and only if a byte of `x` is below 0x0E (exact for any bound up
    // to 0x80: a borrow only ever starts at a byte that is below it).
    let below = |x: u64| x.wrapping_sub(ONES * 0x0E) & !x & HIGHS;
    let word = |at: &[u8]| u64::from_le_bytes(at.try_into().unwrap_or([0xff; 8]));
    let len = bytes.len();
    if len < 16 {
        // (`any` stops at the first: a loop the compiler does not turn into the wide
        // reads this avoids.)
        return bytes.iter().any(|&b| b < 0x0E);
    }
    if len > 256 {
        return memchr::memchr2(b'\n', b'\r', bytes).is_some();
    }
    let mut found = below(word(&bytes[len - 8..]));
    for chunk in bytes.chunks_exact(8) {
        found |= below(word(chunk));
    }
    found != 0
}

#[cfg(test)]
#[test]
fn line_breaks_are_found_at_every_position() {
    let check = |bytes: &[u8], byte: u8, what: &str| {
        let breaks = byte == b'\n' || byte == b'\r';
        // Over 256 bytes it looks for the line breaks themselves.
        let below = byte < 0x0E && (bytes.len() <= 256 || breaks);
        assert_eq!(below_0x0e(bytes), below, "{what}");
        assert_eq!(below_0x0e(bytes) && has_line_break(bytes), breaks, "{what}");
    };
    for len in 0..300 {
        for at in 0..len {
            for byte in [
                b'\n', b'\r', 0, b'\t', 0x0b, 0x0d, 0x0e, 0x0f, 0x8d, 0x8e, 0xff,
            ] {
                let mut bytes = vec![b'x'; len];
                bytes[at] = byte;
                check(&bytes, byte, &format!("{len} {at} {byte}"));
            }
        }
        assert!(!below_0x0e(&vec![0xff; len]));
        assert_eq!(below_0x0e(&vec![b'\t'; len]), (1..=256).contains(&len));
    }
    // Every byte value, at every position of the short slices (bytes and words).
    for len in 1..26 {
        for at in 0..len {
            for byte in 0..=u8::MAX {
                let mut bytes = vec![0x20; len];
                bytes[at] = byte;
                check(&bytes, byte, &format!("{len} {at} {byte}"));
            }
        }
    }
}

impl fmt::Debug for DataWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataWriter").finish_non_exhaustive()
    }
}

impl fmt::Write for DataWriter<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

impl io::Write for DataWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_bytes(bytes);
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_bytes(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;
    use crate::Event;

    fn wire<D: Data>(event: &DataEvent<D>) -> String {
        String::from_utf8(event.encode().unwrap().into_bytes().to_vec()).unwrap()
    }

    #[test]
    fn same_bytes_as_event_for_every_line_ending() {
        for data in [
            "", "a", " lead", "a\nb", "a\r\nb", "a\rb", "a\r\rb", "a\n\rb", "\r\n", "a\n",
        ] {
            let want = Event::new().data(data).encode().into_bytes();
            assert_eq!(
                wire(&DataEvent::bytes(data)).as_bytes(),
                &want[..],
                "{data:?}"
            );
            assert_eq!(
                wire(&DataEvent::display(data)).as_bytes(),
                &want[..],
                "{data:?}"
            );
        }
    }

    #[test]
    fn line_breaks_across_writes() {
        // Every way to cut the text into two or three writes gives the same bytes.
        for data in ["a\r\nb", "\r\n\r\n", "a\r\rb", "x\r", "\r\nx", "a\n\rb\r"] {
            let want = Event::new().data(data).encode().into_bytes();
            for i in 0..=data.len() {
                for j in i..=data.len() {
                    let (a, b, c) = (&data[..i], &data[i..j], &data[j..]);
                    let event = DataEvent::from_fn(move |w| {
                        w.write_str(a)?;
                        w.write_str(b)?;
                        w.write_str(c)
                    });
                    assert_eq!(wire(&event).as_bytes(), &want[..], "{a:?} {b:?} {c:?}");
                }
            }
        }
    }

    #[test]
    fn fields_in_the_order_of_event() {
        let event = DataEvent::display(12)
            .id("1")
            .unwrap()
            .event("e")
            .unwrap()
            .retry(Duration::from_millis(10));
        let want = Event::new()
            .id("1")
            .unwrap()
            .event("e")
            .unwrap()
            .retry(Duration::from_millis(10))
            .data("12");
        assert_eq!(
            wire(&event),
            String::from_utf8(want.encode().into_bytes().to_vec()).unwrap()
        );
        assert_eq!(
            wire(&DataEvent::display(0).id_u64(u64::MAX)),
            "id: 18446744073709551615\ndata: 0\n\n"
        );
    }

    #[test]
    fn failed_data_leaves_the_buffer_as_it_was() {
        struct Fails;
        impl fmt::Display for Fails {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("half")?;
                Err(fmt::Error)
            }
        }
        let mut buf = BytesMut::from(&b"data: before\n\n"[..]);
        let event = DataEvent::display(Fails).id_u64(1);
        assert!(event.encode_to(&mut buf).is_err());
        assert_eq!(&buf[..], b"data: before\n\n");
        Encode::encode_to(&event, &mut buf);
        assert_eq!(&buf[..], b"data: before\n\n");
    }
}
