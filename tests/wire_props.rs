//! Property tests of the wire format: every message survives a round trip,
//! and no input, random or damaged, makes the decoder panic or accept a frame
//! over its limit.

use hookraft::wire::{self, Decoder, Frame, WireError, HEADER_LEN};
use hookraft::{
    AppendReply, Body, Configuration, JoinReply, Member, Message, NodeId, Payload, Role, Term,
    TermKind,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Voter), Just(Role::Observer)]
}

fn configuration() -> impl Strategy<Value = Configuration> {
    let member = ("[a-z0-9.:]{0,24}", role()).prop_map(|(address, role)| Member { address, role });
    btree_map(any::<u64>().prop_map(NodeId), member, 0..5)
        .prop_map(|members| Configuration { members })
}

fn term_kind() -> impl Strategy<Value = TermKind> {
    prop_oneof![
        Just(TermKind::Empty),
        vec(any::<u8>(), 0..300).prop_map(|b| TermKind::Content(Payload::from(b))),
        configuration().prop_map(TermKind::Config),
    ]
}

fn term() -> impl Strategy<Value = Term> {
    (any::<u64>(), any::<u64>(), term_kind()).prop_map(|(index, epoch, kind)| Term {
        index,
        epoch,
        kind,
    })
}

fn append_reply() -> impl Strategy<Value = AppendReply> {
    prop_oneof![
        any::<u64>().prop_map(|match_index| AppendReply::Stored { match_index }),
        (any::<u64>(), any::<u64>(), proptest::option::of((any::<u64>(), any::<u64>()))).prop_map(
            |(prev_index, last_index, conflict)| AppendReply::Mismatch {
                prev_index,
                last_index,
                conflict,
            }
        ),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u64>(), vec(term(), 0..6)).prop_map(
            |(prev_index, prev_epoch, commit, terms)| Body::AppendTerms {
                prev_index,
                prev_epoch,
                commit,
                terms,
            }
        ),
        append_reply().prop_map(Body::AppendReply),
        (any::<u64>(), any::<u64>())
            .prop_map(|(last_index, last_epoch)| Body::VoteRequest { last_index, last_epoch }),
        any::<bool>().prop_map(|granted| Body::VoteReply { granted }),
        ("[a-z0-9:.]{0,40}", any::<bool>()).prop_map(|(address, voter)| Body::JoinRequest {
            address,
            role: if voter { Role::Voter } else { Role::Observer },
        }),
        join_reply().prop_map(Body::JoinReply),
    ]
}

fn join_reply() -> impl Strategy<Value = JoinReply> {
    prop_oneof![
        Just(JoinReply::Accepted),
        proptest::option::of((any::<u64>(), "[a-z0-9:.]{0,40}"))
            .prop_map(|l| { JoinReply::Redirect { leader: l.map(|(id, a)| (NodeId(id), a)) } }),
        ".{0,60}".prop_map(|reason| JoinReply::Refused { reason }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), body()).prop_map(|(from, to, epoch, body)| Message {
        from: NodeId(from),
        to: NodeId(to),
        epoch,
        body,
    })
}

/// Decodes every frame of `bytes` in order.
fn decode_all(decoder: &Decoder, mut bytes: &[u8]) -> Result<Vec<Message>, WireError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = decoder.decode(bytes)?;
        match frame {
            Frame::Messages(m) => out.extend(m),
            Frame::Handshake(_) => panic!("unexpected handshake"),
        }
        bytes = &bytes[used..];
    }
    Ok(out)
}

/// A frame header with a correct checksum around `payload`, so that the
/// payload reaches the message decoder instead of failing the checksum.
fn framed(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&wire::MAGIC);
    out.extend_from_slice(&wire::VERSION.to_be_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(msg in message()) {
        let bytes = wire::encode_messages(std::slice::from_ref(&msg), wire::DEFAULT_MAX_FRAME)
            .unwrap();
        let (frame, used) = Decoder::default().decode(&bytes).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(frame, Frame::Messages(vec![msg]));
    }

    #[test]
    fn batches_round_trip_under_any_limit(
        msgs in vec(message(), 1..20),
        limit in 1024usize..16_384,
    ) {
        let bytes = wire::encode_messages(&msgs, limit).unwrap();
        prop_assert_eq!(decode_all(&Decoder::new(limit), &bytes).unwrap(), msgs);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        let _ = Decoder::new(1024).decode(&bytes);
    }

    #[test]
    fn random_payloads_with_a_valid_checksum_never_panic(
        kind in 0u8..4,
        payload in vec(any::<u8>(), 0..2048),
    ) {
        let bytes = framed(kind, &payload);
        match Decoder::new(4096).decode(&bytes) {
            Ok((_, used)) => prop_assert_eq!(used, bytes.len()),
            Err(WireError::Incomplete { .. }) => prop_assert!(false, "whole frame reported short"),
            Err(_) => {}
        }
    }

    #[test]
    fn damaged_frames_are_refused_without_panic(
        msgs in vec(message(), 1..6),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = wire::encode_messages(&msgs, wire::DEFAULT_MAX_FRAME).unwrap();
        let original = bytes.clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let result = decode_all(&Decoder::default(), &bytes);
        if bytes != original && !bytes.is_empty() {
            // A damaged frame gets past the checksum only by a collision
            // (cutting everything leaves no frame, which is not an error).
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn damaged_payloads_behind_a_valid_checksum_never_panic(
        msgs in vec(message(), 1..6),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let bytes = wire::encode_messages(&msgs, wire::DEFAULT_MAX_FRAME).unwrap();
        let mut payload = bytes[HEADER_LEN..].to_vec();
        for (at, value) in edits {
            let i = at.index(payload.len());
            payload[i] = value;
        }
        let _ = Decoder::default().decode(&framed(2, &payload));
    }

    #[test]
    fn the_limit_is_checked_on_the_header(len in any::<u32>(), max in 0usize..1 << 20) {
        let mut header = framed(2, &[]);
        header[8..12].copy_from_slice(&len.to_be_bytes());
        let head: &[u8; HEADER_LEN] = header[..HEADER_LEN].try_into().unwrap();
        let result = Decoder::new(max).header(head);
        if len as usize > max {
            let refused = matches!(result, Err(WireError::TooLarge { .. }));
            prop_assert!(refused);
        } else {
            prop_assert_eq!(result.unwrap().len, len as usize);
        }
    }
}
