//! Event sources for the layer: ones that report when they are dropped, one that counts
//! what it produces, and one that stays open with nothing more to say.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use futures_core::Stream;
use tokio::sync::Notify;
use tower_sse::Event;

/// Set when the value that owns it is dropped; lets a test see that the layer
/// dropped an event source.
#[derive(Clone, Default)]
pub(crate) struct DropFlag {
    inner: Arc<(AtomicBool, Notify)>,
}

impl DropFlag {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A guard that sets this flag when dropped.
    pub(crate) fn guard(&self) -> DropGuard {
        DropGuard(self.clone())
    }

    pub(crate) fn is_set(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Resolves once the guard was dropped.
    pub(crate) async fn dropped(&self) {
        loop {
            let notified = self.inner.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Sets its [`DropFlag`] when dropped.
pub(crate) struct DropGuard(DropFlag);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.inner.0.store(true, Ordering::SeqCst);
        self.0.inner.1.notify_waiters();
    }
}

/// A stream that carries a [`DropGuard`]: its flag is set when the stream is dropped.
pub(crate) struct Guarded<St> {
    stream: Pin<Box<St>>,
    _guard: DropGuard,
}

impl<St> Guarded<St> {
    pub(crate) fn new(stream: St, flag: &DropFlag) -> Self {
        Self {
            stream: Box::pin(stream),
            _guard: flag.guard(),
        }
    }
}

impl<St: Stream> Stream for Guarded<St> {
    type Item = St::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<St::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

/// 1 KiB of `x`.
pub(crate) fn kib_payload() -> String {
    "x".repeat(1024)
}

/// An event `id: n`, `data: <1 KiB of x>`: 1036 to 1044 bytes on the wire.
pub(crate) fn kib_event(n: u64) -> Event {
    Event::new().id(n.to_string()).unwrap().data(kib_payload())
}

/// A source of `total` events (`id` 1, 2, …), always ready, that counts how many it
/// has produced in `produced`. It returns `Pending` once every 32 items (waking itself
/// at once) so that it shares its thread like a real source would.
pub(crate) struct Counting<F> {
    next: u64,
    total: u64,
    produced: Arc<AtomicU64>,
    make: F,
    since_yield: u32,
}

impl<F: Fn(u64) -> Event> Counting<F> {
    pub(crate) fn new(total: u64, produced: Arc<AtomicU64>, make: F) -> Self {
        Self {
            next: 1,
            total,
            produced,
            make,
            since_yield: 0,
        }
    }
}

impl<F: Fn(u64) -> Event + Unpin> Stream for Counting<F> {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.next > self.total {
            return Poll::Ready(None);
        }
        if self.since_yield >= 32 {
            self.since_yield = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.since_yield += 1;
        let n = self.next;
        self.next += 1;
        let event = (self.make)(n);
        self.produced.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(event)))
    }
}

/// A stream that yields `items` and then stays pending forever (an open stream with
/// nothing more to say).
pub(crate) fn then_pending<T: Send + 'static>(
    items: Vec<T>,
) -> impl Stream<Item = T> + Send + Unpin + 'static {
    use futures_util::StreamExt;
    futures_util::stream::iter(items).chain(futures_util::stream::pending())
}
