//! Helpers the fuzz targets share: building the core's values from fuzz
//! input, and a few checks on byte slices.

use arbitrary::{Result, Unstructured};
use siptrace::core::endpoint::{Endpoint, Transport};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TRANSPORTS: [Transport; 6] =
    [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Sctp, Transport::Ws, Transport::Wss];

pub fn transport(u: &mut Unstructured<'_>) -> Result<Transport> {
    u.choose(&TRANSPORTS).copied()
}

pub fn ip(u: &mut Unstructured<'_>, v6: bool) -> Result<IpAddr> {
    Ok(if v6 {
        IpAddr::V6(Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(u.arbitrary::<[u8; 4]>()?))
    })
}

/// An endpoint as the host bindings make them: transport, IP and port,
/// with no IPv6 flow info or scope.
pub fn endpoint(u: &mut Unstructured<'_>, v6: bool) -> Result<Endpoint> {
    Ok(Endpoint::new(transport(u)?, ip(u, v6)?, u.arbitrary()?))
}

/// Source and destination: mostly of one family, as real traffic is, and
/// sometimes of two, which encoders must refuse.
pub fn endpoint_pair(u: &mut Unstructured<'_>) -> Result<(Endpoint, Endpoint, bool)> {
    let (src_v6, dst_v6) = match u.int_in_range(0..=4u8)? {
        0 | 1 => (false, false),
        2 | 3 => (true, true),
        _ => {
            let src_v6: bool = u.arbitrary()?;
            (src_v6, !src_v6)
        }
    };
    Ok((endpoint(u, src_v6)?, endpoint(u, dst_v6)?, src_v6 != dst_v6))
}

/// Bytes of a length the fuzzer chooses, optionally grown with filler up to
/// past `limit`, so that size limits are reached without huge inputs.
pub fn bytes_up_to(u: &mut Unstructured<'_>, limit: usize) -> Result<Vec<u8>> {
    let mut v: Vec<u8> = u.arbitrary()?;
    if u.ratio(1, 16)? {
        let extra = u.int_in_range(0..=limit + 16)?;
        v.resize(v.len() + extra, b'a');
    }
    Ok(v)
}

/// Whether `inner` lies within `outer` (a borrowed field of a parsed buffer).
/// An empty slice may be a constant, and always counts as within.
pub fn is_within(outer: &[u8], inner: &[u8]) -> bool {
    if inner.is_empty() {
        return true;
    }
    let start = outer.as_ptr() as usize;
    let at = inner.as_ptr() as usize;
    at >= start && at + inner.len() <= start + outer.len()
}

/// Whether `haystack` contains `needle`, ASCII case-insensitively.
pub fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whatever `hep::decode_v3` accepts is chunks that tile the packet
/// exactly, each with its own length; the byte-string fields `Decoded`
/// gives are the last vendor-0 chunk of their kind.
pub fn check_hep_decoder(data: &[u8]) {
    use siptrace::core::hep::{self, chunk, Decoded};
    let Ok(chunks) = hep::decode_v3(data) else { return };
    assert_eq!(&data[..4], b"HEP3");
    assert_eq!(u16::from_be_bytes([data[4], data[5]]) as usize, data.len());
    let mut at = 6;
    for c in &chunks {
        assert_eq!(c.data.as_ptr() as usize - data.as_ptr() as usize, at + 6);
        assert!(is_within(data, c.data));
        let head = &data[at..at + 6];
        assert_eq!(u16::from_be_bytes([head[0], head[1]]), c.vendor);
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), c.kind);
        assert_eq!(u16::from_be_bytes([head[4], head[5]]) as usize, c.data.len() + 6);
        at += 6 + c.data.len();
    }
    assert_eq!(at, data.len());
    let d = Decoded::from_chunks(&chunks);
    let last = |kind| chunks.iter().rev().find(|c| c.vendor == 0 && c.kind == kind).map(|c| c.data);
    assert_eq!(d.payload, last(chunk::PAYLOAD));
    assert_eq!(d.auth_key, last(chunk::AUTH_KEY));
    assert_eq!(d.correlation_id, last(chunk::CORRELATION_ID));
    assert_eq!(d.extra_correlation, last(chunk::EXTRA_CORRELATION));
    assert_eq!(d.node_name, last(chunk::NODE_NAME));
}
