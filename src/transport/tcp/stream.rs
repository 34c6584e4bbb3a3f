//! Reading frames from a socket under deadlines, and the ways a connection
//! ends.
//!
//! The socket's read timeout is a tick, not a verdict: a connection may stay
//! idle between frames for as long as it likes, but once the first byte of a
//! frame has arrived, the whole frame must follow within the frame timeout.
//! A peer that trickles bytes (a slow-loris) is dropped when the deadline
//! passes, however often it sends a byte.

use std::io::{self, BufReader, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::wire::{Decoder, Frame, WireError, HEADER_LEN};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    /// The peer closed the connection between two frames.
    #[error("closed by the peer")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("closed by the peer in the middle of a frame")]
    Truncated,
    /// A frame, or the handshake, did not arrive in time.
    #[error("timed out in the middle of a frame or the handshake")]
    Stalled,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not a valid frame.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The handshake failed, for this reason.
    #[error("handshake refused: {0}")]
    Handshake(String),
    /// The transport is shutting down, or its node has stopped.
    #[error("stopped")]
    Stopped,
}

/// The largest payload buffer a connection keeps between frames.
const KEPT_CAPACITY: usize = 1 << 20;

/// When a frame read must be done.
#[derive(Clone, Copy, Debug)]
pub(super) enum Wait {
    /// Wait as long as it takes for a frame to start, then give it the frame
    /// timeout.
    Idle,
    /// The whole frame must arrive by this instant.
    Until(Instant),
}

/// Frames from one socket, buffered.
pub(super) struct FrameReader {
    inner: BufReader<TcpStream>,
    decoder: Decoder,
    payload: Vec<u8>,
    frame_timeout: Duration,
}

impl FrameReader {
    /// Reads frames from `stream`, whose read timeout must already be set
    /// (it is the tick at which deadlines are checked).
    pub(super) fn new(stream: TcpStream, decoder: Decoder, frame_timeout: Duration) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(64 * 1024, stream),
            decoder,
            payload: Vec::new(),
            frame_timeout,
        }
    }

    /// The next frame. The header is checked, including the length against
    /// the frame limit, before room for the payload is made.
    ///
    /// # Errors
    /// How the connection ended, or what was wrong with the frame.
    pub(super) fn next(&mut self, wait: Wait) -> Result<Frame, ConnError> {
        let mut head = [0u8; HEADER_LEN];
        let deadline = match wait {
            Wait::Until(d) => d,
            Wait::Idle => {
                self.fill(&mut head[..1], None).map_err(|e| match e {
                    ConnError::Truncated => ConnError::Closed,
                    e => e,
                })?;
                Instant::now() + self.frame_timeout
            }
        };
        let start = usize::from(matches!(wait, Wait::Idle));
        self.fill(&mut head[start..], Some(deadline))?;
        let header = self.decoder.header(&head)?;

        self.payload.resize(header.len, 0);
        let mut payload = std::mem::take(&mut self.payload);
        let filled = self.fill(&mut payload, Some(deadline));
        let frame = filled.and_then(|()| Ok(self.decoder.payload(&header, &payload)?));

        // Keep the buffer for the next frame unless a rare large one grew it.
        if payload.capacity() <= KEPT_CAPACITY {
            self.payload = payload;
        }
        frame
    }

    /// Fills `buf`, or fails once `deadline` has passed.
    fn fill(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> Result<(), ConnError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => return Err(ConnError::Truncated),
                Ok(n) => filled += n,
                Err(e) if is_tick(&e) => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
            if filled < buf.len() && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ConnError::Stalled);
            }
        }
        Ok(())
    }
}

/// Whether `e` only says that the read timeout passed (or a signal came).
fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
