//! The byte format nodes exchange over a stream: the only module that knows
//! it.
//!
//! A stream is a sequence of *frames*. Each frame is a fixed header followed
//! by a payload:
//!
//! | bytes | field | notes |
//! | --- | --- | --- |
//! | 0..4 | magic | [`MAGIC`], `b"HKRF"` |
//! | 4..6 | version | [`VERSION`], big-endian |
//! | 6 | kind | [`FrameKind`]: 1 handshake, 2 messages |
//! | 7 | flags | reserved, must be 0 |
//! | 8..12 | length | payload length in bytes, big-endian |
//! | 12..16 | checksum | CRC-32 of bytes 0..12 and the payload, big-endian |
//!
//! The payload of a handshake frame is one [`Handshake`]; the payload of a
//! messages frame is one or more [`Message`]s back to back (a batch), each
//! encoded with bincode's standard configuration through serde.
//!
//! # Limits
//! A [`Decoder`] has a maximum payload length (at most [`MAX_FRAME_LIMIT`],
//! 64 MiB), checked on the header before anything is allocated for the
//! payload. Term content is taken from the payload as it is decoded, never
//! reserved ahead. The only fields reserved before they are read are the
//! strings of a configuration term, and a claimed length counts against a
//! bincode limit of 16 times the payload's size rounded up to a power of
//! two; serde may also reserve room for up to 1 MiB of a sequence ahead of
//! reading it. Nothing decoded can panic: every malformed input is a
//! [`WireError`].
//!
//! # Fuzzing
//! `cargo +nightly fuzz run decode` in `fuzz/` feeds arbitrary bytes to the
//! decoder (it needs `cargo install cargo-fuzz`).

use std::io::{self, Write};

use bincode::config::{self, Config};
use bincode::error::{DecodeError, EncodeError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::types::NodeId;

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"HKRF";

/// The protocol version this crate speaks. A frame of any other version is
/// refused.
pub const VERSION: u16 = 1;

/// Length of a frame header in bytes.
pub const HEADER_LEN: usize = 16;

/// The largest payload any decoder accepts, whatever it is configured with.
pub const MAX_FRAME_LIMIT: usize = 1 << 26;

/// The default largest payload: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Length of the nonce each side of a handshake contributes.
pub const NONCE_LEN: usize = 16;

/// Length of a handshake proof (an HMAC-SHA256 tag).
pub const PROOF_LEN: usize = 32;

/// Why bytes could not be turned into a frame, or a frame into bytes.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame does not start with [`MAGIC`]: the peer does not speak this
    /// protocol, or the stream lost its place.
    #[error("bad magic {found:02x?}: not a hookraft frame")]
    BadMagic {
        /// The four bytes found instead.
        found: [u8; 4],
    },
    /// The frame is of a protocol version this crate does not speak.
    #[error("unsupported protocol version {found} (this node speaks {VERSION})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
    },
    /// The header names a frame kind this crate does not know.
    #[error("unknown frame kind {found}")]
    UnknownKind {
        /// The kind byte in the header.
        found: u8,
    },
    /// The header sets reserved flags.
    #[error("unknown frame flags {found:#04x}")]
    UnknownFlags {
        /// The flags byte in the header.
        found: u8,
    },
    /// The payload is longer than the decoder's (or encoder's) limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The length announced in the header, or of the encoded message.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// The checksum does not match: the frame was damaged.
    #[error("checksum mismatch: header says {expected:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the header.
        expected: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// Fewer bytes than a whole frame: read more and try again.
    #[error("incomplete frame: {needed} bytes needed, {available} available")]
    Incomplete {
        /// Bytes the frame needs in all.
        needed: usize,
        /// Bytes at hand.
        available: usize,
    },
    /// The frame is of another kind than the one expected at this point of
    /// the stream.
    #[error("unexpected {found:?} frame, expected {expected:?}")]
    UnexpectedKind {
        /// The kind expected.
        expected: FrameKind,
        /// The kind received.
        found: FrameKind,
    },
    /// The checksum matched but the payload does not decode.
    #[error("malformed payload: {0}")]
    Malformed(#[source] DecodeError),
    /// A messages frame with no message in it.
    #[error("messages frame without any message")]
    EmptyBatch,
    /// A value could not be encoded.
    #[error("could not encode: {0}")]
    Encode(#[source] EncodeError),
    /// Writing the frame failed.
    #[error("could not write a frame: {0}")]
    Io(#[from] io::Error),
}

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// One [`Handshake`].
    Handshake,
    /// One or more [`Message`]s.
    Messages,
}

impl FrameKind {
    fn code(self) -> u8 {
        match self {
            FrameKind::Handshake => 1,
            FrameKind::Messages => 2,
        }
    }

    fn from_code(code: u8) -> Result<FrameKind, WireError> {
        match code {
            1 => Ok(FrameKind::Handshake),
            2 => Ok(FrameKind::Messages),
            found => Err(WireError::UnknownKind { found }),
        }
    }
}

/// The first frames of a connection, one from each side, then a last one
/// from the side that connected: who is speaking, in which cluster, and (with
/// a shared secret) the proof that it holds the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// The protocol version the sender speaks.
    pub version: u16,
    /// The cluster the sender belongs to.
    pub cluster: u64,
    /// The sender's node id.
    pub node: NodeId,
    /// Random bytes the sender chose for this connection.
    pub nonce: [u8; NONCE_LEN],
    /// With a shared secret, an HMAC-SHA256 tag over both nonces; absent
    /// without one, and in the connecting side's first frame.
    pub proof: Option<[u8; PROOF_LEN]>,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A handshake.
    Handshake(Handshake),
    /// A batch of messages, in the order they were sent.
    Messages(Vec<Message>),
}

/// A checked frame header: the payload that follows is `len` bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the payload carries.
    pub kind: FrameKind,
    /// Payload length in bytes, within the decoder's limit.
    pub len: usize,
    /// The checksum the payload must match.
    pub checksum: u32,
}

fn bincode_config() -> impl Config {
    config::standard()
}

/// The first 12 bytes of a header: everything but the checksum.
fn header_prefix(kind: FrameKind, len: u32) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&MAGIC);
    p[4..6].copy_from_slice(&VERSION.to_be_bytes());
    p[6] = kind.code();
    p[7] = 0;
    p[8..12].copy_from_slice(&len.to_be_bytes());
    p
}

fn checksum(prefix: &[u8; 12], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(prefix);
    h.update(payload);
    h.finalize()
}

/// Writes one frame of `kind` around `payload`.
fn write_frame(kind: FrameKind, payload: &[u8], out: &mut impl Write) -> Result<(), WireError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| WireError::TooLarge { len: payload.len() as u64, max: MAX_FRAME_LIMIT })?;
    let prefix = header_prefix(kind, len);
    out.write_all(&prefix)?;
    out.write_all(&checksum(&prefix, payload).to_be_bytes())?;
    out.write_all(payload)?;
    Ok(())
}

/// Appends a handshake frame to `out`.
///
/// # Errors
/// [`WireError::Encode`] if the value cannot be encoded, which does not
/// happen for a well-formed handshake; [`WireError::Io`] if `out` fails.
pub fn write_handshake(hs: &Handshake, out: &mut impl Write) -> Result<(), WireError> {
    let payload = bincode::serde::encode_to_vec(hs, bincode_config()).map_err(WireError::Encode)?;
    write_frame(FrameKind::Handshake, &payload, out)
}

/// Builds messages frames: messages pushed one by one share a frame until
/// the next one would make it exceed the limit.
#[derive(Debug)]
pub struct FrameEncoder {
    max_frame: usize,
    payload: Vec<u8>,
    messages: usize,
}

impl FrameEncoder {
    /// An encoder whose frames carry at most `max_frame` bytes of payload
    /// (capped at [`MAX_FRAME_LIMIT`]).
    pub fn new(max_frame: usize) -> Self {
        FrameEncoder { max_frame: max_frame.min(MAX_FRAME_LIMIT), payload: Vec::new(), messages: 0 }
    }

    /// Messages waiting in the frame being built.
    pub fn pending(&self) -> usize {
        self.messages
    }

    /// Adds `msg` to the frame being built. When it does not fit, the frame
    /// built so far is written to `out` first. Returns how many frames were
    /// written (0 or 1).
    ///
    /// # Errors
    /// [`WireError::TooLarge`] when `msg` alone exceeds the limit (it is
    /// left out, the frame being built is kept); [`WireError::Io`] when
    /// `out` fails; [`WireError::Encode`] if the message cannot be encoded.
    pub fn push(&mut self, msg: &Message, out: &mut impl Write) -> Result<usize, WireError> {
        let start = self.payload.len();
        let encoded =
            bincode::serde::encode_into_std_write(msg, &mut self.payload, bincode_config());
        let len = match encoded {
            Ok(len) => len,
            Err(e) => {
                self.payload.truncate(start);
                return Err(WireError::Encode(e));
            }
        };
        if len > self.max_frame {
            self.payload.truncate(start);
            return Err(WireError::TooLarge { len: len as u64, max: self.max_frame });
        }
        if start + len <= self.max_frame {
            self.messages += 1;
            return Ok(0);
        }

        // The new message does not fit: send what came before it, then
        // keep it as the start of the next frame.
        let result = write_frame(FrameKind::Messages, &self.payload[..start], out);
        self.payload.drain(..start);
        self.messages = 1;
        result.map(|()| 1)
    }

    /// Writes the frame being built to `out`, if it holds any message.
    /// Returns how many frames were written (0 or 1).
    ///
    /// # Errors
    /// [`WireError::Io`] when `out` fails; the frame is discarded either way.
    pub fn finish(&mut self, out: &mut impl Write) -> Result<usize, WireError> {
        if self.messages == 0 {
            return Ok(0);
        }
        let result = write_frame(FrameKind::Messages, &self.payload, out);
        self.clear();
        result.map(|()| 1)
    }

    /// Discards the frame being built.
    pub fn clear(&mut self) {
        self.payload.clear();
        self.messages = 0;
    }
}

/// Encodes `msgs` as messages frames appended to a new buffer, splitting
/// them over as many frames as the limit requires.
///
/// # Errors
/// [`WireError::TooLarge`] when one message alone exceeds `max_frame`.
pub fn encode_messages(msgs: &[Message], max_frame: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    let mut encoder = FrameEncoder::new(max_frame);
    for m in msgs {
        encoder.push(m, &mut out)?;
    }
    encoder.finish(&mut out)?;
    Ok(out)
}

/// Checks and decodes frames, refusing any payload over its limit before
/// anything is allocated for it.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    max_frame: usize,
}

impl Decoder {
    /// A decoder that accepts payloads of at most `max_frame` bytes (capped
    /// at [`MAX_FRAME_LIMIT`]).
    pub fn new(max_frame: usize) -> Self {
        Decoder { max_frame: max_frame.min(MAX_FRAME_LIMIT) }
    }

    /// The largest payload this decoder accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Checks a header: magic, version, kind, flags, and the payload length
    /// against the limit.
    ///
    /// # Errors
    /// [`WireError::BadMagic`], [`WireError::UnsupportedVersion`],
    /// [`WireError::UnknownKind`], [`WireError::UnknownFlags`] or
    /// [`WireError::TooLarge`].
    pub fn header(&self, bytes: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if word(0) != MAGIC {
            return Err(WireError::BadMagic { found: word(0) });
        }
        let version = u16::from_be_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(WireError::UnsupportedVersion { found: version });
        }
        let kind = FrameKind::from_code(bytes[6])?;
        if bytes[7] != 0 {
            return Err(WireError::UnknownFlags { found: bytes[7] });
        }
        let len = u32::from_be_bytes(word(8));
        if len as usize > self.max_frame {
            return Err(WireError::TooLarge { len: u64::from(len), max: self.max_frame });
        }
        Ok(Header { kind, len: len as usize, checksum: u32::from_be_bytes(word(12)) })
    }

    /// Checks `payload` against the checksum of `header` and decodes it.
    ///
    /// # Errors
    /// [`WireError::Incomplete`] when `payload` is shorter than the header
    /// says, [`WireError::TooLarge`] when it is longer, [`WireError::Checksum`],
    /// [`WireError::Malformed`] or [`WireError::EmptyBatch`].
    pub fn payload(&self, header: &Header, payload: &[u8]) -> Result<Frame, WireError> {
        if payload.len() < header.len {
            return Err(WireError::Incomplete { needed: header.len, available: payload.len() });
        }
        if payload.len() > header.len {
            return Err(WireError::TooLarge { len: payload.len() as u64, max: header.len });
        }
        let prefix = header_prefix(header.kind, header.len as u32);
        let computed = checksum(&prefix, payload);
        if computed != header.checksum {
            return Err(WireError::Checksum { expected: header.checksum, computed });
        }
        match header.kind {
            FrameKind::Handshake => decode_handshake(payload).map(Frame::Handshake),
            FrameKind::Messages => decode_batch(payload).map(Frame::Messages),
        }
    }

    /// Decodes the frame at the start of `bytes`. Returns it with the number
    /// of bytes it took.
    ///
    /// # Errors
    /// [`WireError::Incomplete`] when `bytes` holds less than a whole frame,
    /// and every error of [`Decoder::header`] and [`Decoder::payload`].
    pub fn decode(&self, bytes: &[u8]) -> Result<(Frame, usize), WireError> {
        let Some(head) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Incomplete { needed: HEADER_LEN, available: bytes.len() });
        };
        let header = self.header(head)?;
        let end = HEADER_LEN + header.len;
        let Some(payload) = bytes.get(HEADER_LEN..end) else {
            return Err(WireError::Incomplete { needed: end, available: bytes.len() });
        };
        Ok((self.payload(&header, payload)?, end))
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME)
    }
}

fn decode_handshake(payload: &[u8]) -> Result<Handshake, WireError> {
    let (hs, used) = decode_limited::<Handshake>(payload)?;
    if used != payload.len() {
        return Err(WireError::Malformed(DecodeError::Other("trailing bytes after the handshake")));
    }
    Ok(hs)
}

fn decode_batch(mut payload: &[u8]) -> Result<Vec<Message>, WireError> {
    if payload.is_empty() {
        return Err(WireError::EmptyBatch);
    }
    let mut msgs = Vec::new();
    while !payload.is_empty() {
        let (msg, used) = decode_limited::<Message>(payload)?;
        msgs.push(msg);
        payload = &payload[used..];
    }
    Ok(msgs)
}

/// Decodes one value from the start of `bytes` under a bincode limit
/// proportional to `bytes.len()`.
///
/// bincode counts against its limit the in-memory size of every value it
/// reads (8 bytes for a `u64` sent as one byte) and the length of every byte
/// or string field before reserving room for it. A valid payload of `n`
/// bytes counts at most `9 * n`; the limit is 16 times the next power of two
/// above `n`, so no claimed length can make bincode reserve more than that.
fn decode_limited<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), WireError> {
    fn with<T: DeserializeOwned, const N: usize>(b: &[u8]) -> Result<(T, usize), DecodeError> {
        bincode::serde::decode_from_slice(b, config::standard().with_limit::<N>())
    }

    macro_rules! by_size {
        ($($shift:literal)*) => {
            match bytes.len().next_power_of_two().trailing_zeros() {
                0..=10 => with::<T, { LIMIT_FACTOR << 10 }>(bytes),
                $($shift => with::<T, { LIMIT_FACTOR << $shift }>(bytes),)*
                _ => with::<T, { LIMIT_FACTOR * MAX_FRAME_LIMIT }>(bytes),
            }
        };
    }

    let result = by_size!(11 12 13 14 15 16 17 18 19 20 21 22 23 24 25);
    result.map_err(WireError::Malformed)
}

/// The bincode limit for a payload, per byte of its size rounded up to a
/// power of two.
const LIMIT_FACTOR: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Body;

    fn vote(from: u64) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(2),
            epoch: 3,
            body: Body::VoteRequest { last_index: 10, last_epoch: 2 },
        }
    }

    #[test]
    fn a_batch_round_trips_in_one_frame() {
        let msgs: Vec<_> = (1..=5).map(vote).collect();
        let bytes = encode_messages(&msgs, DEFAULT_MAX_FRAME).unwrap();
        let (frame, used) = Decoder::default().decode(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(frame, Frame::Messages(msgs));
    }

    #[test]
    fn a_small_limit_splits_the_batch_over_frames() {
        let msgs: Vec<_> = (1..=5).map(vote).collect();
        let one = encode_messages(&msgs[..1], DEFAULT_MAX_FRAME).unwrap();
        let limit = (one.len() - HEADER_LEN) * 2;
        let bytes = encode_messages(&msgs, limit).unwrap();

        let decoder = Decoder::new(limit);
        let mut rest = &bytes[..];
        let mut back = Vec::new();
        while !rest.is_empty() {
            let (frame, used) = decoder.decode(rest).unwrap();
            let Frame::Messages(m) = frame else { panic!("expected messages") };
            assert!(m.len() <= 2);
            back.extend(m);
            rest = &rest[used..];
        }
        assert_eq!(back, msgs);
    }

    #[test]
    fn a_message_over_the_limit_is_refused_and_the_frame_kept() {
        let mut encoder = FrameEncoder::new(4);
        let mut out = Vec::new();
        assert!(matches!(encoder.push(&vote(1), &mut out), Err(WireError::TooLarge { .. })));
        assert_eq!(encoder.pending(), 0);
        assert_eq!(encoder.finish(&mut out).unwrap(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn header_faults_are_named() {
        let bytes = encode_messages(&[vote(1)], DEFAULT_MAX_FRAME).unwrap();
        let decoder = Decoder::default();
        let with = |at: usize, value: u8| {
            let mut b = bytes.clone();
            b[at] = value;
            decoder.decode(&b).unwrap_err()
        };
        assert!(matches!(with(0, b'X'), WireError::BadMagic { .. }));
        assert!(matches!(with(5, 9), WireError::UnsupportedVersion { found: 9 }));
        assert!(matches!(with(6, 7), WireError::UnknownKind { found: 7 }));
        assert!(matches!(with(7, 1), WireError::UnknownFlags { found: 1 }));
        assert!(matches!(with(8, 0xff), WireError::TooLarge { .. }));
        assert!(matches!(with(12, 0), WireError::Checksum { .. }));
        let last = bytes.len() - 1;
        assert!(matches!(with(last, bytes[last] ^ 1), WireError::Checksum { .. }));
    }

    #[test]
    fn a_short_buffer_is_incomplete() {
        let bytes = encode_messages(&[vote(1)], DEFAULT_MAX_FRAME).unwrap();
        for cut in 0..bytes.len() {
            assert!(matches!(
                Decoder::default().decode(&bytes[..cut]),
                Err(WireError::Incomplete { .. })
            ));
        }
    }

    #[test]
    fn a_handshake_round_trips() {
        let hs = Handshake {
            version: VERSION,
            cluster: 42,
            node: NodeId(7),
            nonce: [5; NONCE_LEN],
            proof: Some([9; PROOF_LEN]),
        };
        let mut bytes = Vec::new();
        write_handshake(&hs, &mut bytes).unwrap();
        let (frame, _) = Decoder::default().decode(&bytes).unwrap();
        assert_eq!(frame, Frame::Handshake(hs));
    }
}
