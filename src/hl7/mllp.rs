//! MLLP framing (HL7 v2 Minimal Lower Layer Protocol).
//!
//! A frame on the wire is `0x0B <payload> 0x1C 0x0D`. [`Decoder`] turns the bytes of a
//! stream, fed in whatever pieces the socket returns, into payloads:
//!
//! * several frames pipelined in one read come out one by one;
//! * a frame split across reads (even between `0x1C` and `0x0D`) is reassembled;
//! * bytes outside a frame are skipped and reported once as [`FrameError::Garbage`]
//!   (CR and LF between frames are tolerated silently: some senders end a frame with
//!   `0x1C 0x0D 0x0A`);
//! * a frame longer than the configured limit is reported as [`FrameError::TooLarge`]
//!   and its bytes are dropped as they arrive, never buffered; decoding resumes at the
//!   next start block;
//! * a start block inside an unfinished frame drops the unfinished frame
//!   ([`FrameError::Interrupted`]) and starts over, so one broken sender message does
//!   not swallow the next one.
//!
//! Every [`FrameError`] is recoverable: log it and keep calling [`Decoder::next_frame`].
//! Memory is bounded by `max_frame_len` plus whatever the caller pushed and has not
//! drained yet (drain after every `push`, as `crate::intake::mllp::read_frame` does).
//!
//! No I/O here: the socket side (reading from and writing to a stream) is in
//! `crate::intake::mllp`.

use std::collections::VecDeque;

/// Start block (VT).
pub const START_BLOCK: u8 = 0x0B;
/// First byte of the end block (FS).
pub const END_BLOCK: u8 = 0x1C;
/// Second byte of the end block (CR).
pub const CARRIAGE_RETURN: u8 = 0x0D;
/// Default payload limit. Reports with embedded documents (ED/base64 OBX) reach a few
/// MB; anything far beyond that on an order/report interface is a fault or an attack.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// How many garbage bytes are kept for the log line of a [`FrameError::Garbage`].
const GARBAGE_PREVIEW_LEN: usize = 32;

/// A recoverable framing problem. The decoder has already resynchronised when it
/// reports one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bytes that were not inside a frame were skipped.
    #[error("skipped {skipped} byte(s) outside an MLLP frame (starting {preview:02X?})")]
    Garbage {
        /// Number of bytes skipped.
        skipped: u64,
        /// The first few skipped bytes, for the log.
        preview: Vec<u8>,
    },
    /// A frame exceeded the payload limit; its bytes were discarded.
    #[error("MLLP frame larger than {limit} bytes: {discarded} byte(s) discarded")]
    TooLarge {
        /// The configured limit.
        limit: usize,
        /// Payload bytes dropped, counted up to the end of the frame.
        discarded: u64,
    },
    /// A new start block arrived before the end block of the current frame.
    #[error("MLLP frame interrupted by a new start block after {len} byte(s)")]
    Interrupted {
        /// Payload bytes of the dropped, unfinished frame.
        len: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside an MLLP frame after {len} byte(s)")]
    Truncated {
        /// Payload bytes of the dropped, unfinished frame.
        len: usize,
    },
}

/// A decoded item: a complete payload or a recoverable framing problem.
pub type FrameResult = Result<Vec<u8>, FrameError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames, looking for a start block.
    Idle,
    /// Inside a frame; `saw_end` is true when the last byte was 0x1C.
    InFrame { saw_end: bool },
    /// Inside a frame that is over the limit; bytes are counted, not kept.
    Discarding { saw_end: bool },
}

/// Incremental MLLP decoder for one stream. Feed it with [`push`](Self::push), take
/// payloads out with [`next_frame`](Self::next_frame), call [`finish`](Self::finish)
/// when the peer closed. It never panics, whatever the input.
#[derive(Debug)]
pub struct Decoder {
    max_frame_len: usize,
    state: State,
    frame: Vec<u8>,
    discarded: u64,
    garbage: u64,
    preview: Vec<u8>,
    ready: VecDeque<FrameResult>,
    finished: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder {
    /// A decoder that rejects payloads longer than `max_frame_len` bytes (framing bytes
    /// not counted).
    pub fn new(max_frame_len: usize) -> Self {
        Decoder {
            max_frame_len,
            state: State::Idle,
            frame: Vec::new(),
            discarded: 0,
            garbage: 0,
            preview: Vec::new(),
            ready: VecDeque::new(),
            finished: false,
        }
    }

    /// The payload limit.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// True when no frame is in progress and nothing is waiting to be taken: the
    /// connection is between messages (useful to pick an idle vs. a read timeout).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle && self.ready.is_empty()
    }

    /// True once [`finish`](Self::finish) was called and every item was taken.
    pub fn is_finished(&self) -> bool {
        self.finished && self.ready.is_empty()
    }

    /// Feed bytes read from the stream. Complete frames and errors are queued for
    /// [`next_frame`](Self::next_frame).
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let used = match self.state {
                State::Idle => self.push_idle(data),
                State::InFrame { saw_end } => self.push_in_frame(data, saw_end),
                State::Discarding { saw_end } => self.push_discarding(data, saw_end),
            };
            // Each step consumes at least one byte, so this loop ends; the clamp keeps
            // the slice index in range even if a step misreported.
            data = &data[used.clamp(1, data.len())..];
        }
    }

    /// The next complete payload or framing error, in stream order.
    pub fn next_frame(&mut self) -> Option<FrameResult> {
        self.ready.pop_front()
    }

    /// Tell the decoder the stream ended. Pending garbage and an unfinished frame are
    /// reported through [`next_frame`](Self::next_frame). A frame whose final CR is
    /// missing (stream ended right after 0x1C) is still delivered.
    pub fn finish(&mut self) {
        match self.state {
            State::Idle => {}
            State::InFrame { saw_end: true } => {
                let frame = std::mem::take(&mut self.frame);
                self.ready.push_back(Ok(frame));
            }
            State::InFrame { saw_end: false } => {
                let len = self.frame.len();
                self.frame = Vec::new();
                self.ready.push_back(Err(FrameError::Truncated { len }));
            }
            State::Discarding { .. } => self.emit_too_large(),
        }
        self.state = State::Idle;
        self.flush_garbage();
        self.finished = true;
    }

    fn push_idle(&mut self, data: &[u8]) -> usize {
        match data.iter().position(|&b| b == START_BLOCK) {
            Some(pos) => {
                self.note_garbage(&data[..pos]);
                self.flush_garbage();
                self.state = State::InFrame { saw_end: false };
                pos + 1
            }
            None => {
                self.note_garbage(data);
                data.len()
            }
        }
    }

    fn push_in_frame(&mut self, data: &[u8], saw_end: bool) -> usize {
        if saw_end {
            // The byte after 0x1C decides. CR completes the frame; anything else is
            // accepted as the end too (0x1C never occurs in HL7 text) and that byte is
            // handled again as the first byte outside the frame.
            let frame = std::mem::take(&mut self.frame);
            self.ready.push_back(Ok(frame));
            self.state = State::Idle;
            return if data[0] == CARRIAGE_RETURN {
                1
            } else {
                self.push_idle(&data[..1])
            };
        }
        let stop = data
            .iter()
            .position(|&b| b == END_BLOCK || b == START_BLOCK);
        let content_len = stop.unwrap_or(data.len());
        if self.frame.len().saturating_add(content_len) > self.max_frame_len {
            // Over the limit: drop what we hold and count the rest without keeping it.
            self.discarded = self.frame.len() as u64;
            self.frame = Vec::new();
            self.state = State::Discarding { saw_end: false };
            return self.push_discarding(data, false);
        }
        self.frame.extend_from_slice(&data[..content_len]);
        match stop {
            None => data.len(),
            Some(pos) if data[pos] == END_BLOCK => {
                self.state = State::InFrame { saw_end: true };
                pos + 1
            }
            Some(pos) => {
                // A start block inside a frame: the sender gave up on the previous
                // message. Drop it and start the new frame here.
                let len = self.frame.len();
                self.frame.clear();
                self.ready.push_back(Err(FrameError::Interrupted { len }));
                self.state = State::InFrame { saw_end: false };
                pos + 1
            }
        }
    }

    fn push_discarding(&mut self, data: &[u8], saw_end: bool) -> usize {
        if saw_end {
            self.emit_too_large();
            self.state = State::Idle;
            return if data[0] == CARRIAGE_RETURN {
                1
            } else {
                self.push_idle(&data[..1])
            };
        }
        match data
            .iter()
            .position(|&b| b == END_BLOCK || b == START_BLOCK)
        {
            None => {
                self.discarded = self.discarded.saturating_add(data.len() as u64);
                data.len()
            }
            Some(pos) => {
                self.discarded = self.discarded.saturating_add(pos as u64);
                if data[pos] == END_BLOCK {
                    self.state = State::Discarding { saw_end: true };
                } else {
                    // Resynchronise on the next start block even without an end block.
                    self.emit_too_large();
                    self.state = State::InFrame { saw_end: false };
                }
                pos + 1
            }
        }
    }

    fn emit_too_large(&mut self) {
        let discarded = std::mem::take(&mut self.discarded);
        self.ready.push_back(Err(FrameError::TooLarge {
            limit: self.max_frame_len,
            discarded,
        }));
    }

    fn note_garbage(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // CR/LF between frames are common trailers, not a fault worth a log line.
            if b == b'\r' || b == b'\n' {
                continue;
            }
            self.garbage = self.garbage.saturating_add(1);
            if self.preview.len() < GARBAGE_PREVIEW_LEN {
                self.preview.push(b);
            }
        }
    }

    fn flush_garbage(&mut self) {
        if self.garbage > 0 {
            let skipped = std::mem::take(&mut self.garbage);
            let preview = std::mem::take(&mut self.preview);
            self.ready
                .push_back(Err(FrameError::Garbage { skipped, preview }));
        }
    }
}

/// Wrap a payload in an MLLP frame. The payload must not contain 0x0B or 0x1C (MLLP
/// cannot escape them; HL7 text never contains them).
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    out.push(START_BLOCK);
    out.extend_from_slice(payload);
    out.push(END_BLOCK);
    out.push(CARRIAGE_RETURN);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut Decoder) -> Vec<FrameResult> {
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    /// Everything a default decoder makes of `wire` pushed at once and then ended.
    fn decode_ended(wire: &[u8]) -> Vec<FrameResult> {
        let mut d = Decoder::default();
        d.push(wire);
        d.finish();
        drain(&mut d)
    }

    #[test]
    fn pipelined_frames_in_one_read() {
        let mut wire = encode_frame(b"MSH|one");
        wire.extend(encode_frame(b"MSH|two"));
        wire.extend(encode_frame(b""));
        let mut d = Decoder::default();
        d.push(&wire);
        assert_eq!(
            drain(&mut d),
            vec![Ok(b"MSH|one".to_vec()), Ok(b"MSH|two".to_vec()), Ok(vec![])]
        );
        assert!(d.is_idle());
    }

    #[test]
    fn every_split_point_reassembles() {
        let mut wire = encode_frame(b"MSH|^~\\&|A\rPID|1");
        wire.extend(encode_frame(b"MSH|second"));
        for cut in 0..=wire.len() {
            let mut d = Decoder::default();
            d.push(&wire[..cut]);
            d.push(&wire[cut..]);
            d.finish();
            assert_eq!(
                drain(&mut d),
                vec![
                    Ok(b"MSH|^~\\&|A\rPID|1".to_vec()),
                    Ok(b"MSH|second".to_vec())
                ],
                "cut at {cut}"
            );
        }
        // One byte at a time, including between 0x1C and 0x0D.
        let mut d = Decoder::default();
        for b in &wire {
            d.push(std::slice::from_ref(b));
        }
        assert_eq!(drain(&mut d).len(), 2);
    }

    #[test]
    fn garbage_before_start_block_is_reported_once() {
        let mut wire = b"GET / HTTP/1.1\r\n".to_vec();
        wire.extend(encode_frame(b"MSH|x"));
        let mut d = Decoder::default();
        d.push(&wire[..5]);
        d.push(&wire[5..]);
        let items = drain(&mut d);
        assert_eq!(items.len(), 2);
        match &items[0] {
            // "GET / HTTP/1.1" is 14 bytes; the CR LF are tolerated.
            Err(FrameError::Garbage { skipped, preview }) => {
                assert_eq!(*skipped, 14);
                assert_eq!(preview.as_slice(), b"GET / HTTP/1.1");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(items[1], Ok(b"MSH|x".to_vec()));
    }

    #[test]
    fn trailing_newline_after_frame_is_not_garbage() {
        let mut wire = encode_frame(b"MSH|a");
        wire.push(b'\n');
        wire.extend(encode_frame(b"MSH|b"));
        assert_eq!(
            decode_ended(&wire),
            vec![Ok(b"MSH|a".to_vec()), Ok(b"MSH|b".to_vec())]
        );
    }

    #[test]
    fn oversize_frame_is_dropped_and_decoder_resyncs() {
        let mut d = Decoder::new(10);
        let mut wire = encode_frame(b"0123456789ABCDEF");
        wire.extend(encode_frame(b"MSH|ok"));
        // Feed in small pieces so the oversize frame spans several pushes.
        for chunk in wire.chunks(3) {
            d.push(chunk);
            // The oversize payload is never held in memory.
            assert!(d.frame.len() <= 10);
        }
        assert_eq!(
            drain(&mut d),
            vec![
                Err(FrameError::TooLarge {
                    limit: 10,
                    discarded: 16
                }),
                Ok(b"MSH|ok".to_vec())
            ]
        );
    }

    #[test]
    fn oversize_frame_without_end_resyncs_on_start_block() {
        let mut d = Decoder::new(4);
        let mut wire = vec![START_BLOCK];
        wire.extend_from_slice(b"far too long");
        wire.extend(encode_frame(b"MSH"));
        d.push(&wire);
        let items = drain(&mut d);
        assert!(matches!(items[0], Err(FrameError::TooLarge { .. })));
        assert_eq!(items[1], Ok(b"MSH".to_vec()));
    }

    #[test]
    fn exact_limit_is_accepted() {
        let mut d = Decoder::new(5);
        d.push(&encode_frame(b"12345"));
        assert_eq!(drain(&mut d), vec![Ok(b"12345".to_vec())]);
    }

    #[test]
    fn start_block_inside_frame_interrupts_it() {
        let mut wire = vec![START_BLOCK];
        wire.extend_from_slice(b"MSH|lost");
        wire.extend(encode_frame(b"MSH|kept"));
        let mut d = Decoder::default();
        d.push(&wire);
        assert_eq!(
            drain(&mut d),
            vec![
                Err(FrameError::Interrupted { len: 8 }),
                Ok(b"MSH|kept".to_vec())
            ]
        );
    }

    #[test]
    fn end_block_without_cr_is_tolerated() {
        let wire = [
            &[START_BLOCK][..],
            b"MSH|a",
            &[END_BLOCK, START_BLOCK],
            b"MSH|b",
            &[END_BLOCK],
        ]
        .concat();
        assert_eq!(
            decode_ended(&wire),
            vec![Ok(b"MSH|a".to_vec()), Ok(b"MSH|b".to_vec())]
        );
    }

    #[test]
    fn eof_inside_frame_is_truncated() {
        let mut d = Decoder::default();
        d.push(&[START_BLOCK, b'M', b'S']);
        d.push(b"trailing garbage after nothing");
        d.finish();
        let items = drain(&mut d);
        assert_eq!(items, vec![Err(FrameError::Truncated { len: 32 })]);
        assert!(d.is_finished());
    }

    #[test]
    fn eof_after_garbage_reports_it() {
        let mut d = Decoder::default();
        d.push(b"noise");
        assert!(d.next_frame().is_none());
        d.finish();
        assert!(matches!(
            d.next_frame(),
            Some(Err(FrameError::Garbage { skipped: 5, .. }))
        ));
    }
}
