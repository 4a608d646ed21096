//! Transport parameters on the wire, and the server's early-data context.

use quinn_proto::transport_parameters::TransportParameters;

/// The wire form of `params` (RFC 9000 §18).
pub(crate) fn encode(params: &TransportParameters) -> Vec<u8> {
    let mut out = Vec::new();
    params.write(&mut out);
    out
}

#[cfg(feature = "server")]
/// Parameters that differ on every connection and say nothing about what
/// 0-RTT may rely on: original_destination_connection_id (0x00),
/// stateless_reset_token (0x02), preferred_address (0x0d),
/// initial_source_connection_id (0x0f), retry_source_connection_id (0x10).
const PER_CONNECTION: [u64; 5] = [0x00, 0x02, 0x0d, 0x0f, 0x10];

#[cfg(feature = "server")]
/// The context a server binds 0-RTT to: its configured `salt` plus every
/// transport parameter that limits what a 0-RTT client may send, in a
/// canonical order. A client's remembered parameters are only valid while
/// these are unchanged (RFC 9000 §7.4.1), so a change here must reject 0-RTT.
pub(crate) fn early_data_context(salt: &[u8], encoded: &[u8]) -> Vec<u8> {
    let mut stable: Vec<(u64, &[u8])> = parse(encoded)
        .into_iter()
        // Reserved ids 31 * N + 27 are GREASE, random per connection.
        .filter(|(id, _)| !PER_CONNECTION.contains(id) && id % 31 != 27)
        .collect();
    stable.sort_unstable();
    let mut context = salt.to_vec();
    context.push(0);
    for (id, value) in stable {
        context.extend_from_slice(&id.to_be_bytes());
        context.extend_from_slice(&(value.len() as u64).to_be_bytes());
        context.extend_from_slice(value);
    }
    context
}

#[cfg(feature = "server")]
/// `(id, value)` pairs; parsing stops at the first malformed entry (these
/// bytes are our own encoding, so that never happens in practice).
fn parse(mut bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some((id, rest)) = varint(bytes) else { break };
        let Some((len, rest)) = varint(rest) else { break };
        let Some(value) = usize::try_from(len).ok().and_then(|l| rest.get(..l)) else {
            break;
        };
        out.push((id, value));
        bytes = &rest[value.len()..];
    }
    out
}

#[cfg(feature = "server")]
/// A QUIC variable-length integer (RFC 9000 §16) and what follows it.
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let first = *bytes.first()?;
    let len = 1usize << (first >> 6);
    let raw = bytes.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for b in &raw[1..] {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, &bytes[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_of_every_length_decode() {
        assert_eq!(varint(&[0x25]), Some((37, &[][..])));
        assert_eq!(varint(&[0x7b, 0xbd]), Some((15293, &[][..])));
        assert_eq!(
            varint(&[0x9d, 0x7f, 0x3e, 0x7d, 9]),
            Some((494_878_333, &[9][..]))
        );
        assert_eq!(
            varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, &[][..]))
        );
        assert_eq!(varint(&[0x7b]), None, "truncated");
    }

    #[test]
    fn context_ignores_per_connection_parameters_and_order() {
        // initial_max_data (0x04) = 1000, initial_source_connection_id = 0xAA.., GREASE 27.
        let a = [0x04, 0x02, 0x43, 0xe8, 0x0f, 0x02, 0xaa, 0xbb, 0x1b, 0x01, 0x00];
        let b = [0x0f, 0x02, 0xcc, 0xdd, 0x04, 0x02, 0x43, 0xe8];
        assert_eq!(early_data_context(b"s", &a), early_data_context(b"s", &b));
        let more_data = [0x04, 0x02, 0x47, 0xd0];
        assert_ne!(early_data_context(b"s", &a), early_data_context(b"s", &more_data));
        assert_ne!(early_data_context(b"s", &a), early_data_context(b"t", &a));
    }
}
