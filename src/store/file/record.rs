//! The on-disk frame of one record, shared by the segments and the hard-state
//! file.
//!
//! A frame is `len: u32 LE | crc: u32 LE | body`, where `body` is `len` bytes
//! of bincode (serde API, standard configuration) and `crc` is the CRC32 of the
//! four length bytes followed by the body, so that a damaged length is caught
//! as surely as a damaged body.

use std::fmt;

use bincode::config;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bytes before the body of every frame.
pub(crate) const HEADER_LEN: usize = 8;

/// The largest `max_record_size` the store accepts. It keeps the decoder's
/// allocation limit (a multiple of the record length, see [`decode`]) within
/// what a 32-bit `usize` can express.
pub(crate) const MAX_RECORD_CEILING: usize = 128 << 20;

/// Why the bytes at an offset are not a whole, valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadFrame {
    /// Fewer than [`HEADER_LEN`] bytes are left.
    ShortHeader,
    /// The length header is above the configured maximum.
    TooLong { len: u64, max: usize },
    /// The body runs past the end of the file.
    ShortBody { len: u64 },
    /// The checksum does not match the length and body.
    Checksum,
}

impl fmt::Display for BadFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadFrame::ShortHeader => f.write_str("record header cut short"),
            BadFrame::TooLong { len, max } => {
                write!(f, "record length {len} exceeds max_record_size {max}")
            }
            BadFrame::ShortBody { len } => write!(f, "record body of {len} bytes cut short"),
            BadFrame::Checksum => f.write_str("record checksum mismatch"),
        }
    }
}

/// Appends the frame of `value` to `out` and returns the body length.
///
/// # Errors
/// The encoded body is larger than `max` (it could not be read back), or
/// bincode refuses the value.
pub(crate) fn encode<T: Serialize>(
    value: &T,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<usize, String> {
    let body = bincode::serde::encode_to_vec(value, config::standard())
        .map_err(|e| format!("cannot encode record: {e}"))?;
    if body.len() > max {
        return Err(format!("record of {} bytes exceeds max_record_size {max}", body.len()));
    }

    // `max` is at most MAX_RECORD_CEILING, so the length fits in a u32.
    let len = (body.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(&len, &body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(body.len())
}

/// The body of the frame starting at `at` in `buf`, and where the next frame
/// starts. Nothing is allocated: the length is checked against `max` and
/// against what `buf` holds before the body is looked at.
///
/// # Errors
/// Why the bytes at `at` are not a valid frame.
pub(crate) fn parse(buf: &[u8], at: usize, max: usize) -> Result<(&[u8], usize), BadFrame> {
    let rest = buf.get(at..).unwrap_or_default();
    if rest.len() < HEADER_LEN {
        return Err(BadFrame::ShortHeader);
    }
    let len_bytes: [u8; 4] = rest[..4].try_into().expect("slice of four bytes");
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("slice of four bytes"));
    let len = u32::from_le_bytes(len_bytes) as u64;

    if len > max as u64 {
        return Err(BadFrame::TooLong { len, max });
    }
    let body = rest[HEADER_LEN..].get(..len as usize).ok_or(BadFrame::ShortBody { len })?;
    if checksum(&len_bytes, body) != crc {
        return Err(BadFrame::Checksum);
    }
    Ok((body, at + HEADER_LEN + body.len()))
}

/// Decodes a body that passed [`parse`], refusing trailing bytes.
///
/// bincode allocates a byte string before it reads it, trusting the length
/// inside the body. A body whose checksum matches but whose inner lengths lie
/// (a crafted file) must not make it allocate without bound, so the decoder is
/// given a limit derived from the body length: bincode counts at most eight
/// bytes of memory per byte of input (a one-byte varint read as a `u64`), so
/// a valid body never reaches `8 * len + 64`, rounded up to a power of two.
///
/// # Errors
/// What bincode found wrong, as text.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let bound = body.len().saturating_mul(8).saturating_add(64);
    let tier = bound.next_power_of_two().trailing_zeros().max(12);
    let (value, used) = decode_in_tier::<T>(body, tier).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} trailing bytes after the record", body.len() - used));
    }
    Ok(value)
}

/// Runs bincode with a limit of `1 << tier` bytes. The limit is a type
/// parameter in bincode, hence one arm per power of two.
fn decode_in_tier<T: DeserializeOwned>(
    body: &[u8],
    tier: u32,
) -> Result<(T, usize), bincode::error::DecodeError> {
    macro_rules! tiers {
        ($($k:literal)*) => {
            match tier {
                $($k => bincode::serde::decode_from_slice(
                    body,
                    config::standard().with_limit::<{ 1usize << $k }>(),
                ),)*
                _ => Err(bincode::error::DecodeError::LimitExceeded),
            }
        };
    }
    tiers!(12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
}

fn checksum(len: &[u8; 4], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(body);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Configuration, Term, TermKind};

    fn frame_of(term: &Term) -> Vec<u8> {
        let mut out = Vec::new();
        encode(term, 1 << 20, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_of_every_kind() {
        let kinds = [
            TermKind::Empty,
            TermKind::Content("hello".into()),
            TermKind::Config(Configuration::voters([(1, "a:1"), (2, "b:2")])),
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let term = Term { index: i as u64 + 1, epoch: 7, kind };
            let buf = frame_of(&term);
            let (body, next) = parse(&buf, 0, 1 << 20).unwrap();
            assert_eq!(next, buf.len());
            assert_eq!(decode::<Term>(body).unwrap(), term);
        }
    }

    #[test]
    fn every_damage_is_named() {
        let term = Term { index: 1, epoch: 1, kind: TermKind::Content("abc".into()) };
        let buf = frame_of(&term);
        assert_eq!(parse(&buf[..5], 0, 1024), Err(BadFrame::ShortHeader));
        assert!(matches!(parse(&buf[..buf.len() - 1], 0, 1024), Err(BadFrame::ShortBody { .. })));
        assert!(matches!(parse(&buf, 0, 2), Err(BadFrame::TooLong { .. })));

        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(parse(&flipped, 0, 1024), Err(BadFrame::Checksum));
    }

    #[test]
    fn lying_inner_length_is_refused_without_allocating() {
        // A body claiming a payload of about 2^60 bytes, with a valid checksum.
        let mut body = vec![1, 1, 1]; // index 1, epoch 1, variant Content
        body.push(253); // varint marker: a u64 follows
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<Term>(&body).is_err());
    }
}
