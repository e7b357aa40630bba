//! Direct mode (`Wait` without a stall timeout): the body drains the source itself,
//! straight into the outgoing frame. Nothing waits in a queue, so only the frame's
//! size is capped.

use bytes::BytesMut;

use super::drain::{Put, Rules, Sink};
use crate::{
    buffer::fits_frame,
    event::{Encode, Event},
};

/// The frame being filled by [`drain`](super::drain::drain).
pub(super) struct FrameSink<'a> {
    pub(super) frame: &'a mut BytesMut,
    /// The frame's cap in bytes.
    pub(super) max: usize,
    /// Events in the frame.
    pub(super) events: usize,
    /// Where the frame ends when its last event did not fit: that event starts the
    /// next frame.
    pub(super) split_at: Option<usize>,
}

impl<T: Encode> Sink<T> for FrameSink<'_> {
    const BUDGETED: bool = false;

    #[inline]
    fn has_room(&mut self) -> bool {
        self.split_at.is_none() && self.frame.len() < self.max
    }

    #[inline]
    fn put(&mut self, item: &mut T, rules: &Rules<'_>) -> Put {
        let before = self.frame.len();
        item.encode_to(self.frame);
        let len = self.frame.len() - before;
        if rules.too_large(len) {
            self.frame.truncate(before);
            if self.frame.capacity() > self.max.saturating_mul(2) {
                // Do not keep the room the skipped event took.
                *self.frame = BytesMut::from(&self.frame[..]);
            }
            return Put::Skipped;
        }
        if !fits_frame(before, len, self.max) {
            self.split_at = Some(before);
            return Put::Full;
        }
        self.events += 1;
        Put::Taken
    }

    fn end(&mut self, last: Option<Event>) {
        if let Some(last) = last {
            last.encode_to(self.frame);
            self.events += 1;
        }
    }
}
