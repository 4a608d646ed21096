//! Bodies of any size in constant memory: a request body as the origin
//! reads it ([`Received`]: the first [`MAX_BODY`] bytes kept for `/echo`,
//! every byte counted and hashed for `/upload`), and `/stream/N`'s body,
//! made piece by piece as it is sent.

use bytes::{Bytes, BytesMut};

/// The most of a request body the origin keeps (it echoes bodies back).
pub(crate) const MAX_BODY: usize = 1 << 20;

/// `/stream/N` sends pieces of this size (the last one shorter).
pub(crate) const STREAM_PIECE: usize = 16 * 1024;

static PIECE: [u8; STREAM_PIECE] = [b'.'; STREAM_PIECE];

/// A request body as it arrived.
pub(crate) struct Received {
    kept: BytesMut,
    total: u64,
    hash: boring::sha::Sha256,
}

impl Default for Received {
    fn default() -> Self {
        Self {
            kept: BytesMut::new(),
            total: 0,
            hash: boring::sha::Sha256::new(),
        }
    }
}

impl Received {
    /// Takes the next piece of the body.
    pub(crate) fn add(&mut self, piece: &[u8]) {
        self.total += piece.len() as u64;
        self.hash.update(piece);
        let room = MAX_BODY.saturating_sub(self.kept.len()).min(piece.len());
        self.kept.extend_from_slice(&piece[..room]);
    }

    /// The first [`MAX_BODY`] bytes, the length of the whole, and the
    /// SHA-256 of the whole in hex.
    pub(crate) fn finish(self) -> (Bytes, u64, String) {
        let digest = self.hash.finish();
        let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
        (self.kept.freeze(), self.total, hex)
    }
}

/// The next piece of a `/stream/N` body with `left` bytes still to send,
/// or `None` at its end.
pub(crate) fn stream_piece(left: &mut u64) -> Option<Bytes> {
    if *left == 0 {
        return None;
    }
    let n = usize::try_from(*left).map_or(STREAM_PIECE, |l| l.min(STREAM_PIECE));
    *left -= n as u64;
    Some(Bytes::from_static(&PIECE[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_body_keeps_its_head_and_counts_the_rest() {
        let mut received = Received::default();
        let piece = vec![7u8; 700 * 1024];
        received.add(&piece);
        received.add(&piece);
        let (kept, total, sha) = received.finish();
        assert_eq!((kept.len(), total), (MAX_BODY, 1400 * 1024));
        assert_eq!(sha.len(), 64);
    }

    #[test]
    fn a_stream_body_has_exactly_the_length_asked_for() {
        let mut left = STREAM_PIECE as u64 * 2 + 5;
        let mut sizes = Vec::new();
        while let Some(piece) = stream_piece(&mut left) {
            sizes.push(piece.len());
        }
        assert_eq!(sizes, [STREAM_PIECE, STREAM_PIECE, 5]);
    }
}
