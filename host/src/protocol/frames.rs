//! The host ↔ bridge wire format (the other half is `guest/bridge/protocol.py` and `transport.py`).
//!
//! Every message is a frame: one ASCII kind byte, a big-endian `u32` payload
//! length, the payload. The host writes frames to the guest's stdin and reads
//! them from its stdout; the guest's stderr is the app's log and carries no
//! frames, so nothing an app prints can corrupt a response.

use bytes::{Buf, Bytes, BytesMut};

/// Frame kinds. Host → guest: `Request`, `Body`, `BodyError`, `Continue`,
/// `Cancel`. Guest → host: the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Q`: the environ of a new request, `key\0value\0…` in latin-1.
    Request,
    /// `B`: a slice of the request body; empty means the body ended.
    Body,
    /// `Z`: reading the request body failed (client gone, bad framing).
    BodyError,
    /// `K`: flow control, the guest may send more body data.
    Continue,
    /// `C`: the client went away; the guest stops iterating and calls close().
    Cancel,
    /// `A`: the app is imported and the guest waits for requests.
    Ready,
    /// `X`: the app could not be loaded; the payload says why, for a person.
    StartupFailed,
    /// `L`: a log record of the bridge, `level\0message`.
    Log,
    /// `S`: status and headers, `status\0name\0value\0…` in latin-1.
    Start,
    /// `D`: response body bytes.
    Data,
    /// `E`: the response is complete; the guest waits for the next request.
    End,
    /// `F`: the app failed after the response had started; abort it.
    Failed,
    /// `R`: the app wants up to N (u32 payload) more bytes of the request body.
    Read,
    /// `P`: snapshot mode only: the app is imported and the guest returns
    /// from `wasgi_init`; JSON of the files the import read and of open fds.
    Prepared,
    /// `I`: host to a guest restored from a snapshot, before anything else:
    /// JSON of what names this instance's group in the bridge's messages
    /// (its group, policies and grant origins), which a snapshot shared by
    /// several groups cannot hold.
    Identity,
}

impl Kind {
    pub fn byte(self) -> u8 {
        match self {
            Kind::Request => b'Q',
            Kind::Body => b'B',
            Kind::BodyError => b'Z',
            Kind::Continue => b'K',
            Kind::Cancel => b'C',
            Kind::Ready => b'A',
            Kind::StartupFailed => b'X',
            Kind::Log => b'L',
            Kind::Start => b'S',
            Kind::Data => b'D',
            Kind::End => b'E',
            Kind::Failed => b'F',
            Kind::Read => b'R',
            Kind::Prepared => b'P',
            Kind::Identity => b'I',
        }
    }

    /// Kinds the guest may send; anything else on its stdout is a broken stream.
    fn from_guest(byte: u8) -> Option<Kind> {
        Some(match byte {
            b'A' => Kind::Ready,
            b'X' => Kind::StartupFailed,
            b'L' => Kind::Log,
            b'S' => Kind::Start,
            b'D' => Kind::Data,
            b'E' => Kind::End,
            b'F' => Kind::Failed,
            b'P' => Kind::Prepared,
            b'R' => Kind::Read,
            _ => return None,
        })
    }
}

/// Flow control shared with the bridge: after this much unacknowledged
/// response data the guest waits for `Continue` or `Cancel`.
pub const ACK_BYTES: usize = 256 * 1024;
pub const ACK_FRAMES: usize = 16;

/// The largest frame the guest may send (a 256 KiB data chunk, or a large
/// header block or log record); a longer declared length is a broken stream.
pub const MAX_GUEST_FRAME: usize = 4 * 1024 * 1024;

const HEADER_LEN: usize = 5;

/// Encodes one frame.
pub fn encode(kind: Kind, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&[kind.byte()]);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    buf.freeze()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the guest wrote an unknown frame kind 0x{0:02x} to its stdout (something other than the bridge wrote to fd 1?)")]
    UnknownKind(u8),
    #[error("the guest declared a {0}-byte frame, over the {MAX_GUEST_FRAME}-byte limit")]
    TooLong(usize),
}

/// Reassembles guest frames from the arbitrary slices its stdout delivers.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Like `push`, but an empty decoder takes a uniquely owned slice as its
    /// buffer instead of copying it: a slice of whole frames (what a host
    /// call sends) then comes out without another copy.
    pub fn push_bytes(&mut self, bytes: Bytes) {
        if self.buf.is_empty() {
            match bytes.try_into_mut() {
                Ok(owned) => self.buf = owned,
                Err(shared) => self.buf.extend_from_slice(&shared),
            }
        } else {
            self.buf.extend_from_slice(&bytes);
        }
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Result<Option<(Kind, Bytes)>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = Kind::from_guest(self.buf[0]).ok_or(FrameError::UnknownKind(self.buf[0]))?;
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_GUEST_FRAME {
            return Err(FrameError::TooLong(len));
        }
        if self.buf.len() < HEADER_LEN + len {
            self.buf.reserve(HEADER_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        Ok(Some((kind, self.buf.split_to(len).freeze())))
    }
}

/// Splits a `\0`-separated payload (the `Start` frame).
pub fn fields(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    payload.split(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_reassemble() {
        let mut wire = encode(Kind::Start, b"200 OK\0Content-Type\0text/plain").to_vec();
        wire.extend_from_slice(&encode(Kind::Data, b"hello"));
        wire.extend_from_slice(&encode(Kind::End, b""));
        // Feed one byte at a time: frames come out whole and in order.
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        for byte in wire {
            decoder.push(&[byte]);
            while let Some(frame) = decoder.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, Kind::Start);
        assert_eq!(got[1], (Kind::Data, Bytes::from_static(b"hello")));
        assert_eq!(got[2], (Kind::End, Bytes::new()));
    }

    #[test]
    fn owned_slices_decode_like_copied_ones() {
        let mut decoder = Decoder::default();
        let mut wire = encode(Kind::Data, b"abc").to_vec();
        wire.extend_from_slice(&encode(Kind::End, b"")[..3]);
        decoder.push_bytes(Bytes::from(wire));
        assert_eq!(decoder.next_frame().unwrap(), Some((Kind::Data, Bytes::from_static(b"abc"))));
        assert_eq!(decoder.next_frame().unwrap(), None);
        decoder.push_bytes(Bytes::from_static(&[0, 0]));
        assert_eq!(decoder.next_frame().unwrap(), Some((Kind::End, Bytes::new())));
        assert_eq!(decoder.next_frame().unwrap(), None);
    }

    #[test]
    fn stray_output_is_a_broken_stream() {
        let mut decoder = Decoder::default();
        decoder.push(b"hello world\n");
        assert_eq!(decoder.next_frame(), Err(FrameError::UnknownKind(b'h')));
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut decoder = Decoder::default();
        decoder.push(&[b'D', 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(decoder.next_frame(), Err(FrameError::TooLong(_))));
    }
}

/// Mutation fuzzing of this format (see `crate::fuzz`).
#[cfg(test)]
mod fuzz_target {
    use crate::fuzz::{run, Gen};
    use crate::protocol::frames::{self, Decoder, Kind};

    /// The guest's frame stream, cut into arbitrary slices.
    #[test]
    fn fuzz_guest_frames() {
        let mut stream = Vec::new();
        for (kind, payload) in [(Kind::Ready, &b"host calls"[..]), (Kind::Start, b"200 OK\0Content-Type\0text/plain"), (Kind::Body, b"hello"), (Kind::End, b"")] {
            stream.extend_from_slice(&frames::encode(kind, payload));
        }
        run("guest-frames", &[&stream, &stream[..7]], |input| {
            let mut decoder = Decoder::default();
            let mut g = Gen::new(input.len() as u64 + 1);
            let mut rest = input;
            while !rest.is_empty() {
                let n = 1 + g.below(rest.len());
                decoder.push(&rest[..n]);
                rest = &rest[n..];
                loop {
                    match decoder.next_frame() {
                        Ok(Some((_, payload))) => {
                            let _ = frames::fields(&payload).count();
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        });
    }
}
