//! The handshake that opens every connection, and its proof of a shared
//! secret.
//!
//! Three frames, all [`Handshake`]s:
//!
//! 1. the dialer says who it is, with a fresh nonce and no proof;
//! 2. the acceptor checks the version and the cluster, then answers with
//!    who it is, its own fresh nonce and, with a secret, its proof;
//! 3. the dialer checks the acceptor (version, cluster, the node it meant
//!    to reach, the proof) and sends its own proof.
//!
//! A proof is HMAC-SHA256, keyed by the shared secret, over a label naming
//! the side, the cluster, both node ids and both nonces. Each side's nonce
//! makes the other's proof good for this connection only; the labels keep
//! one side's proof from being replayed as the other's.

use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::time::Instant;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::stream::{ConnError, FrameReader, Wait};
use crate::types::NodeId;
use crate::wire::{self, Frame, FrameKind, Handshake, WireError, NONCE_LEN, PROOF_LEN, VERSION};

/// Who this side is.
pub(super) struct Identity<'a> {
    pub(super) cluster: u64,
    pub(super) node: NodeId,
    pub(super) secret: Option<&'a [u8]>,
}

/// Which side of a connection computes a proof.
#[derive(Clone, Copy)]
enum Side {
    Dialer,
    Acceptor,
}

/// The dialer's part: returns once the acceptor is known to be `peer`, of
/// this cluster, holding the same secret (or none, like this side).
///
/// # Errors
/// [`ConnError::Handshake`] with the reason, or how the connection failed.
pub(super) fn dial(
    me: &Identity<'_>,
    peer: NodeId,
    stream: &TcpStream,
    reader: &mut FrameReader,
    deadline: Instant,
) -> Result<(), ConnError> {
    let nonce = fresh_nonce();
    send(stream, &hello(me, nonce, None))?;

    let reply = expect_handshake(reader, deadline)?;
    check_peer(me, &reply)?;
    if reply.node != peer {
        return Err(refused(format!("reached {} instead of {peer}", reply.node)));
    }
    let keys = (me.node, peer, &nonce, &reply.nonce);
    check_proof(me, Side::Acceptor, keys, reply.proof)?;

    let proof = me.secret.map(|s| prove(s, Side::Dialer, me.cluster, keys));
    send(stream, &hello(me, nonce, proof))
}

/// The acceptor's part: returns the dialer's node id once it has proved
/// what it claims.
///
/// # Errors
/// [`ConnError::Handshake`] with the reason, or how the connection failed.
pub(super) fn accept(
    me: &Identity<'_>,
    stream: &TcpStream,
    reader: &mut FrameReader,
    deadline: Instant,
) -> Result<NodeId, ConnError> {
    let first = expect_handshake(reader, deadline)?;
    check_peer(me, &first)?;
    let nonce = fresh_nonce();
    let keys = (first.node, me.node, &first.nonce, &nonce);
    let proof = me.secret.map(|s| prove(s, Side::Acceptor, me.cluster, keys));
    send(stream, &hello(me, nonce, proof))?;

    let last = expect_handshake(reader, deadline)?;
    check_peer(me, &last)?;
    if last.node != first.node || last.nonce != first.nonce {
        return Err(refused("the dialer changed its identity mid-handshake".into()));
    }
    check_proof(me, Side::Dialer, keys, last.proof)?;
    Ok(first.node)
}

fn hello(me: &Identity<'_>, nonce: [u8; NONCE_LEN], proof: Option<[u8; PROOF_LEN]>) -> Handshake {
    Handshake { version: VERSION, cluster: me.cluster, node: me.node, nonce, proof }
}

fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

fn send(stream: &TcpStream, hs: &Handshake) -> Result<(), ConnError> {
    let mut out = BufWriter::new(stream);
    wire::write_handshake(hs, &mut out)?;
    out.flush()?;
    Ok(())
}

fn expect_handshake(reader: &mut FrameReader, deadline: Instant) -> Result<Handshake, ConnError> {
    match reader.next(Wait::Until(deadline))? {
        Frame::Handshake(hs) => Ok(hs),
        Frame::Messages(_) => Err(ConnError::Wire(WireError::UnexpectedKind {
            expected: FrameKind::Handshake,
            found: FrameKind::Messages,
        })),
    }
}

fn check_peer(me: &Identity<'_>, hs: &Handshake) -> Result<(), ConnError> {
    if hs.version != VERSION {
        return Err(refused(format!("protocol version {}", hs.version)));
    }
    if hs.cluster != me.cluster {
        return Err(refused(format!("from cluster {}", hs.cluster)));
    }
    if hs.node == me.node {
        return Err(refused(format!("the peer claims this node's id {}", me.node)));
    }
    Ok(())
}

/// The ids and nonces a proof covers: dialer, acceptor, dialer's nonce,
/// acceptor's nonce.
type Keys<'a> = (NodeId, NodeId, &'a [u8; NONCE_LEN], &'a [u8; NONCE_LEN]);

fn mac(secret: &[u8], side: Side, cluster: u64, keys: Keys<'_>) -> Hmac<Sha256> {
    let label: &[u8] = match side {
        Side::Dialer => b"hookraft-v1 dialer",
        Side::Acceptor => b"hookraft-v1 acceptor",
    };
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(label);
    mac.update(&cluster.to_be_bytes());
    mac.update(&keys.0 .0.to_be_bytes());
    mac.update(&keys.1 .0.to_be_bytes());
    mac.update(keys.2);
    mac.update(keys.3);
    mac
}

fn prove(secret: &[u8], side: Side, cluster: u64, keys: Keys<'_>) -> [u8; PROOF_LEN] {
    mac(secret, side, cluster, keys).finalize().into_bytes().into()
}

fn check_proof(
    me: &Identity<'_>,
    side: Side,
    keys: Keys<'_>,
    proof: Option<[u8; PROOF_LEN]>,
) -> Result<(), ConnError> {
    match (me.secret, proof) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(refused("the peer has a shared secret, this node has none".into())),
        (Some(_), None) => Err(refused("the peer proves no shared secret".into())),
        (Some(secret), Some(proof)) => mac(secret, side, me.cluster, keys)
            .verify_slice(&proof)
            .map_err(|_| refused("wrong shared secret".into())),
    }
}

fn refused(reason: String) -> ConnError {
    ConnError::Handshake(reason)
}
