//! HEP (Homer Encapsulation Protocol) version 3: the encoder the module
//! sends with, and a decoder for tests and for checking captures.
//!
//! Every chunk uses vendor 0 and the order Kamailio's siptrace uses:
//! family, IP protocol, addresses, ports, time, protocol type, capture id,
//! correlation id, auth key, payload. Capture servers accept that set.

use crate::core::endpoint::Endpoint;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// HEP protocol types (chunk 0x000b) the module sends.
pub mod proto_type {
    pub const SIP: u8 = 1;
    pub const LOG: u8 = 100;
    /// The non-standard types OpenSIPS's proto_hep gives management
    /// commands, REST queries and connection events; RPC commands use MI's.
    pub const RPC: u8 = 0x57;
    pub const REST: u8 = 0x58;
    pub const NET: u8 = 0x59;
}

/// Generic chunk type ids.
pub mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const SRC_IP4: u16 = 0x0003;
    pub const DST_IP4: u16 = 0x0004;
    pub const SRC_IP6: u16 = 0x0005;
    pub const DST_IP6: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TIME_SEC: u16 = 0x0009;
    pub const TIME_USEC: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION_ID: u16 = 0x0011;
    /// The capture node's name (`hep_node_name`), as heplify sends it.
    pub const NODE_NAME: u16 = 0x0013;
    /// A JSON object of further correlations, as OpenSIPS's proto_hep sends.
    pub const EXTRA_CORRELATION: u16 = 0x0065;
}

const AF_INET: u8 = 2;
/// Version, header length, family, protocol and the two ports.
const V1_HEADER_LEN: usize = 8;
/// Seconds, microseconds, capture id and padding.
const V2_TIME_HEADER_LEN: usize = 12;
const AF_INET6: u8 = 10;
const HEADER_LEN: usize = 6;
const CHUNK_HEADER_LEN: usize = 6;
/// The length field is 16 bits and counts the whole packet.
pub const MAX_PACKET_LEN: usize = u16::MAX as usize;

/// Settings that are the same for every packet of a module instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HepSettings {
    pub capture_id: u32,
    pub auth_key: Option<Vec<u8>>,
    /// 1, 2 or 3; anything else encodes as 3.
    pub version: u8,
    pub layout: ChunkLayout,
    /// Sent in chunk 0x0013 of every HEPv3 packet when set (and not
    /// empty), right after the capture id: the name of the node that
    /// traced the record. Versions 1 and 2 have no place for it.
    pub node_name: Option<Vec<u8>>,
}

/// The order of the chunks in a HEPv3 packet. Receivers do not depend on
/// it; it follows the host's own sender, so that a packet is the same
/// byte for byte as the one the module replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChunkLayout {
    /// Kamailio's siptrace: addresses, ports, times, type, capture id,
    /// correlations, auth key, payload.
    #[default]
    Kamailio,
    /// OpenSIPS's proto_hep: ports, times, type, capture id, addresses,
    /// payload, then the correlations.
    OpenSips,
}

/// One packet to encode.
#[derive(Debug, Clone, Copy)]
pub struct HepPacket<'a> {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub time_sec: u32,
    pub time_usec: u32,
    pub proto_type: u8,
    pub correlation_id: Option<&'a [u8]>,
    /// A JSON object such as `{"sip":"<call-id>"}`; HEPv3 only.
    pub extra_correlation: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The packet would exceed the 64 KiB that the length field can count.
    Oversize { len: usize },
    /// Source and destination are of different IP families; a packet has
    /// a single family chunk.
    MixedFamily,
    /// Nothing to carry.
    EmptyPayload,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Oversize { len } => {
                write!(f, "HEP packet of {len} bytes exceeds the {MAX_PACKET_LEN}-byte limit")
            }
            EncodeError::MixedFamily => f.write_str("source and destination differ in IP family"),
            EncodeError::EmptyPayload => f.write_str("empty payload"),
        }
    }
}

/// Appends `packet`, encoded as HEPv3, to `out`.
/// Appends `packet` to `out` in the HEP version of `settings`.
pub fn encode(packet: &HepPacket<'_>, settings: &HepSettings, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match settings.version {
        1 | 2 => encode_v1_v2(packet, settings, out),
        _ => encode_v3(packet, settings, out),
    }
}

/// The IP protocol a packet names. The two ends differ only when the host
/// makes one of them up (OpenSIPS's `trace_local_ip`); OpenSIPS's tracer
/// then names the destination's, Kamailio's siptrace the source's.
fn ip_proto(packet: &HepPacket<'_>, settings: &HepSettings) -> u8 {
    match settings.layout {
        ChunkLayout::Kamailio => packet.src.transport.hep_ip_proto(),
        ChunkLayout::OpenSips => packet.dst.transport.hep_ip_proto(),
    }
}

/// HEPv1 and v2: a fixed header (version, header length, family, IP
/// protocol, ports), the two addresses, for v2 a time header, then the
/// payload. Ports are in network order, as captagent and sipcapture read
/// them. These versions carry no protocol type, correlation id or auth key.
fn encode_v1_v2(
    packet: &HepPacket<'_>,
    settings: &HepSettings,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if packet.payload.is_empty() {
        return Err(EncodeError::EmptyPayload);
    }
    let (family, addresses): (u8, Vec<u8>) = match (packet.src.addr.ip(), packet.dst.addr.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (AF_INET, [s.octets(), d.octets()].concat()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (AF_INET6, [s.octets(), d.octets()].concat()),
        _ => return Err(EncodeError::MixedFamily),
    };
    let header_len = V1_HEADER_LEN + addresses.len();
    let time_len = if settings.version == 2 { V2_TIME_HEADER_LEN } else { 0 };
    let len = header_len + time_len + packet.payload.len();
    if len > MAX_PACKET_LEN {
        return Err(EncodeError::Oversize { len });
    }
    out.reserve(len);
    out.extend_from_slice(&[settings.version, header_len as u8, family, ip_proto(packet, settings)]);
    out.extend_from_slice(&packet.src.addr.port().to_be_bytes());
    out.extend_from_slice(&packet.dst.addr.port().to_be_bytes());
    out.extend_from_slice(&addresses);
    if settings.version == 2 {
        // The time header is in the sender's byte order, little-endian on
        // every host Kamailio runs on; the capture id has 16 bits.
        out.extend_from_slice(&packet.time_sec.to_le_bytes());
        out.extend_from_slice(&packet.time_usec.to_le_bytes());
        out.extend_from_slice(&(settings.capture_id as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(packet.payload);
    Ok(())
}

pub fn encode_v3(
    packet: &HepPacket<'_>,
    settings: &HepSettings,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if packet.payload.is_empty() {
        return Err(EncodeError::EmptyPayload);
    }
    let (src_ip, dst_ip) = (packet.src.addr.ip(), packet.dst.addr.ip());
    let family = match (src_ip, dst_ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
        _ => return Err(EncodeError::MixedFamily),
    };
    let correlation = packet.correlation_id.filter(|c| !c.is_empty());
    let auth_key = settings.auth_key.as_deref().filter(|k| !k.is_empty());
    let extra = packet.extra_correlation.filter(|c| !c.is_empty());
    let node_name = settings.node_name.as_deref().filter(|n| !n.is_empty());
    let len = encoded_len_v3(family == AF_INET6, [correlation, extra, auth_key, node_name], packet.payload);
    if len > MAX_PACKET_LEN {
        return Err(EncodeError::Oversize { len });
    }

    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&(len as u16).to_be_bytes());
    put_chunk(out, chunk::IP_FAMILY, &[family]);
    put_chunk(out, chunk::IP_PROTO, &[ip_proto(packet, settings)]);
    let addresses = |out: &mut Vec<u8>| match (src_ip, dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put_chunk(out, chunk::SRC_IP4, &s.octets());
            put_chunk(out, chunk::DST_IP4, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put_chunk(out, chunk::SRC_IP6, &s.octets());
            put_chunk(out, chunk::DST_IP6, &d.octets());
        }
        _ => unreachable!("families checked above"),
    };
    let optional = |out: &mut Vec<u8>, kind: u16, data: Option<&[u8]>| {
        if let Some(data) = data {
            put_chunk(out, kind, data);
        }
    };
    if settings.layout == ChunkLayout::Kamailio {
        addresses(out);
    }
    put_chunk(out, chunk::SRC_PORT, &packet.src.addr.port().to_be_bytes());
    put_chunk(out, chunk::DST_PORT, &packet.dst.addr.port().to_be_bytes());
    put_chunk(out, chunk::TIME_SEC, &packet.time_sec.to_be_bytes());
    put_chunk(out, chunk::TIME_USEC, &packet.time_usec.to_be_bytes());
    put_chunk(out, chunk::PROTO_TYPE, &[packet.proto_type]);
    put_chunk(out, chunk::CAPTURE_ID, &settings.capture_id.to_be_bytes());
    optional(out, chunk::NODE_NAME, node_name);
    match settings.layout {
        ChunkLayout::Kamailio => {
            optional(out, chunk::CORRELATION_ID, correlation);
            optional(out, chunk::EXTRA_CORRELATION, extra);
            optional(out, chunk::AUTH_KEY, auth_key);
            put_chunk(out, chunk::PAYLOAD, packet.payload);
        }
        ChunkLayout::OpenSips => {
            addresses(out);
            optional(out, chunk::AUTH_KEY, auth_key);
            put_chunk(out, chunk::PAYLOAD, packet.payload);
            optional(out, chunk::EXTRA_CORRELATION, extra);
            optional(out, chunk::CORRELATION_ID, correlation);
        }
    }
    debug_assert_eq!(out.len() - start, len);
    Ok(())
}

/// `optional` holds the chunks a packet may lack: correlation id, extra
/// correlation, auth key and node name.
fn encoded_len_v3(ipv6: bool, optional: [Option<&[u8]>; 4], payload: &[u8]) -> usize {
    let data_len = |n: usize| CHUNK_HEADER_LEN + n;
    let addr_len = if ipv6 { 16 } else { 4 };
    HEADER_LEN
        + data_len(1) * 2 // family, IP protocol
        + data_len(addr_len) * 2
        + data_len(2) * 2 // ports
        + data_len(4) * 2 // seconds, microseconds
        + data_len(1) // protocol type
        + data_len(4) // capture id
        + optional.iter().flatten().map(|c| data_len(c.len())).sum::<usize>()
        + data_len(payload.len())
}

fn put_chunk(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((CHUNK_HEADER_LEN + data.len()) as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// One chunk of a decoded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub vendor: u16,
    pub kind: u16,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    NotHep3,
    /// The header's length differs from the buffer's.
    LengthMismatch {
        header: usize,
        actual: usize,
    },
    /// A chunk's length is below its own header size or runs past the end.
    BadChunk {
        offset: usize,
    },
}

/// Splits a HEPv3 packet into its chunks, checking every length.
pub fn decode_v3(buf: &[u8]) -> Result<Vec<Chunk<'_>>, DecodeError> {
    if buf.len() < HEADER_LEN || &buf[..4] != b"HEP3" {
        return Err(DecodeError::NotHep3);
    }
    let header = u16::from_be_bytes([buf[4], buf[5]]) as usize;
    if header != buf.len() {
        return Err(DecodeError::LengthMismatch { header, actual: buf.len() });
    }
    let mut chunks = Vec::new();
    let mut at = HEADER_LEN;
    while at < buf.len() {
        let head = buf.get(at..at + CHUNK_HEADER_LEN).ok_or(DecodeError::BadChunk { offset: at })?;
        let vendor = u16::from_be_bytes([head[0], head[1]]);
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        if len < CHUNK_HEADER_LEN || at + len > buf.len() {
            return Err(DecodeError::BadChunk { offset: at });
        }
        chunks.push(Chunk { vendor, kind, data: &buf[at + CHUNK_HEADER_LEN..at + len] });
        at += len;
    }
    Ok(chunks)
}

/// The generic fields of a decoded packet, for checks and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded<'a> {
    pub family: Option<u8>,
    pub ip_proto: Option<u8>,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub time_sec: Option<u32>,
    pub time_usec: Option<u32>,
    pub proto_type: Option<u8>,
    pub capture_id: Option<u32>,
    pub auth_key: Option<&'a [u8]>,
    pub correlation_id: Option<&'a [u8]>,
    pub extra_correlation: Option<&'a [u8]>,
    pub node_name: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

impl<'a> Decoded<'a> {
    /// Reads the vendor-0 chunks it knows; others are skipped, as receivers do.
    pub fn from_chunks(chunks: &[Chunk<'a>]) -> Decoded<'a> {
        let mut d = Decoded::default();
        for c in chunks.iter().filter(|c| c.vendor == 0) {
            let data = c.data;
            match c.kind {
                chunk::IP_FAMILY => d.family = u8_of(data),
                chunk::IP_PROTO => d.ip_proto = u8_of(data),
                chunk::SRC_IP4 => d.src_ip = <[u8; 4]>::try_from(data).ok().map(|a| Ipv4Addr::from(a).into()),
                chunk::DST_IP4 => d.dst_ip = <[u8; 4]>::try_from(data).ok().map(|a| Ipv4Addr::from(a).into()),
                chunk::SRC_IP6 => {
                    d.src_ip = <[u8; 16]>::try_from(data).ok().map(|a| Ipv6Addr::from(a).into())
                }
                chunk::DST_IP6 => {
                    d.dst_ip = <[u8; 16]>::try_from(data).ok().map(|a| Ipv6Addr::from(a).into())
                }
                chunk::SRC_PORT => d.src_port = <[u8; 2]>::try_from(data).ok().map(u16::from_be_bytes),
                chunk::DST_PORT => d.dst_port = <[u8; 2]>::try_from(data).ok().map(u16::from_be_bytes),
                chunk::TIME_SEC => d.time_sec = <[u8; 4]>::try_from(data).ok().map(u32::from_be_bytes),
                chunk::TIME_USEC => d.time_usec = <[u8; 4]>::try_from(data).ok().map(u32::from_be_bytes),
                chunk::PROTO_TYPE => d.proto_type = u8_of(data),
                chunk::CAPTURE_ID => d.capture_id = <[u8; 4]>::try_from(data).ok().map(u32::from_be_bytes),
                chunk::AUTH_KEY => d.auth_key = Some(data),
                chunk::CORRELATION_ID => d.correlation_id = Some(data),
                chunk::EXTRA_CORRELATION => d.extra_correlation = Some(data),
                chunk::NODE_NAME => d.node_name = Some(data),
                chunk::PAYLOAD => d.payload = Some(data),
                _ => {}
            }
        }
        d
    }
}

fn u8_of(data: &[u8]) -> Option<u8> {
    match data {
        [b] => Some(*b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::endpoint::Transport;

    fn endpoint(t: Transport, s: &str) -> Endpoint {
        Endpoint { transport: t, addr: s.parse().unwrap() }
    }

    fn packet<'a>(payload: &'a [u8], correlation: Option<&'a [u8]>) -> HepPacket<'a> {
        HepPacket {
            src: endpoint(Transport::Udp, "10.1.2.3:5060"),
            dst: endpoint(Transport::Udp, "10.9.8.7:5080"),
            time_sec: 1_700_000_000,
            time_usec: 123_456,
            proto_type: proto_type::SIP,
            correlation_id: correlation,
            extra_correlation: None,
            payload,
        }
    }

    #[test]
    fn ipv4_packet_has_the_exact_bytes_of_kamailios_layout() {
        let settings = HepSettings {
            capture_id: 0x0102_0304,
            auth_key: Some(b"k".to_vec()),
            version: 3,
            ..Default::default()
        };
        let mut out = Vec::new();
        encode_v3(&packet(b"SIP", Some(b"cid")), &settings, &mut out).unwrap();
        let expected: Vec<u8> = [
            &b"HEP3"[..],
            &[0, 118],
            &[0, 0, 0, 1, 0, 7, 2],
            &[0, 0, 0, 2, 0, 7, 17],
            &[0, 0, 0, 3, 0, 10, 10, 1, 2, 3],
            &[0, 0, 0, 4, 0, 10, 10, 9, 8, 7],
            &[0, 0, 0, 7, 0, 8, 0x13, 0xc4],
            &[0, 0, 0, 8, 0, 8, 0x13, 0xd8],
            &[0, 0, 0, 9, 0, 10, 0x65, 0x53, 0xf1, 0x00],
            &[0, 0, 0, 10, 0, 10, 0x00, 0x01, 0xe2, 0x40],
            &[0, 0, 0, 11, 0, 7, 1],
            &[0, 0, 0, 12, 0, 10, 1, 2, 3, 4],
            &[0, 0, 0, 0x11, 0, 9, b'c', b'i', b'd'],
            &[0, 0, 0, 0x0e, 0, 7, b'k'],
            &[0, 0, 0, 0x0f, 0, 9, b'S', b'I', b'P'],
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn the_opensips_layout_puts_addresses_after_the_header_and_correlations_last() {
        let settings = HepSettings { capture_id: 1, layout: ChunkLayout::OpenSips, ..Default::default() };
        let mut p = packet(b"SIP", Some(b"cid"));
        p.extra_correlation = Some(br#"{"net":"1"}"#);
        let mut out = Vec::new();
        encode_v3(&p, &settings, &mut out).unwrap();
        let kinds: Vec<u16> = decode_v3(&out).unwrap().iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [1, 2, 7, 8, 9, 10, 11, 12, 3, 4, 0x0f, 0x65, 0x11]);
        let mut kamailio = Vec::new();
        encode_v3(&p, &HepSettings { layout: ChunkLayout::Kamailio, ..settings }, &mut kamailio).unwrap();
        assert_eq!(kamailio.len(), out.len());
        assert_eq!(
            Decoded::from_chunks(&decode_v3(&kamailio).unwrap()),
            Decoded::from_chunks(&decode_v3(&out).unwrap())
        );
    }

    #[test]
    fn ends_of_two_protocols_name_the_source_for_kamailio_and_the_destination_for_opensips() {
        let mut p = packet(b"SIP/2.0 200 OK\r\n\r\n", None);
        p.src = endpoint(Transport::Tcp, "10.1.1.1:5064");
        p.dst = endpoint(Transport::Udp, "127.0.0.1:5060");
        for (layout, proto) in [(ChunkLayout::Kamailio, 6), (ChunkLayout::OpenSips, 17)] {
            for version in [2, 3] {
                let settings = HepSettings { version, layout, ..Default::default() };
                let mut out = Vec::new();
                encode(&p, &settings, &mut out).unwrap();
                let named = if version == 3 {
                    Decoded::from_chunks(&decode_v3(&out).unwrap()).ip_proto
                } else {
                    Some(out[3])
                };
                assert_eq!(named, Some(proto), "{layout:?} v{version}");
            }
        }
    }

    #[test]
    fn round_trip_ipv6_through_the_decoder() {
        let mut p = packet(b"INVITE sip:x SIP/2.0\r\n\r\n", Some(b"call-1"));
        p.src = endpoint(Transport::Tls, "[2001:db8::1]:5061");
        p.dst = endpoint(Transport::Tls, "[2001:db8::2]:6000");
        let settings = HepSettings { capture_id: 7, auth_key: None, version: 3, ..Default::default() };
        let mut out = Vec::new();
        encode_v3(&p, &settings, &mut out).unwrap();
        let chunks = decode_v3(&out).unwrap();
        let kinds: Vec<u16> = chunks.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 0x11, 0x0f]);
        assert!(chunks.iter().all(|c| c.vendor == 0 && !c.data.is_empty()));
        let d = Decoded::from_chunks(&chunks);
        assert_eq!(d.family, Some(10));
        assert_eq!(d.ip_proto, Some(22));
        assert_eq!(d.src_ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(d.dst_ip, Some("2001:db8::2".parse().unwrap()));
        assert_eq!((d.src_port, d.dst_port), (Some(5061), Some(6000)));
        assert_eq!((d.time_sec, d.time_usec), (Some(1_700_000_000), Some(123_456)));
        assert_eq!(d.proto_type, Some(1));
        assert_eq!(d.capture_id, Some(7));
        assert_eq!(d.correlation_id, Some(&b"call-1"[..]));
        assert_eq!(d.auth_key, None);
        assert_eq!(d.payload, Some(p.payload));
    }

    #[test]
    fn versions_1_and_2_byte_by_byte() {
        let p = packet(b"OPTIONS", Some(b"ignored"));
        let mut v1 = Vec::new();
        let s1 = HepSettings {
            capture_id: 0x0102,
            auth_key: Some(b"k".to_vec()),
            version: 1,
            ..Default::default()
        };
        encode(&p, &s1, &mut v1).unwrap();
        let addresses = [p.src.addr.ip(), p.dst.addr.ip()].map(|ip| match ip {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(_) => unreachable!(),
        });
        let ports = [p.src.addr.port().to_be_bytes(), p.dst.addr.port().to_be_bytes()].concat();
        let head = [&[1u8, 16, 2, 17][..], &ports, &addresses[0], &addresses[1]].concat();
        assert_eq!(v1, [&head[..], b"OPTIONS"].concat());

        let mut v2 = Vec::new();
        encode(&p, &HepSettings { version: 2, ..s1 }, &mut v2).unwrap();
        let time = [&1_700_000_000u32.to_le_bytes()[..], &123_456u32.to_le_bytes(), &[2, 1, 0, 0]].concat();
        let mut head2 = head.clone();
        head2[0] = 2;
        assert_eq!(v2, [&head2[..], &time, b"OPTIONS"].concat());

        let mut v6 = Vec::new();
        let mut p6 = p;
        p6.src = endpoint(Transport::Tcp, "[2001:db8::1]:5060");
        p6.dst = endpoint(Transport::Tcp, "[2001:db8::2]:5070");
        encode(&p6, &HepSettings { version: 1, ..Default::default() }, &mut v6).unwrap();
        assert_eq!(&v6[..4], &[1, 40, 10, 6]);
        assert_eq!(v6.len(), 40 + 7);
    }

    #[test]
    fn extra_correlation_follows_the_correlation_id() {
        let mut p = packet(br#"{"Event":"INFO"}"#, Some(b"call-1"));
        p.proto_type = proto_type::LOG;
        p.extra_correlation = Some(br#"{"sip":"call-1"}"#);
        let settings =
            HepSettings { capture_id: 1, auth_key: Some(b"k".to_vec()), version: 3, ..Default::default() };
        let mut out = Vec::new();
        encode_v3(&p, &settings, &mut out).unwrap();
        let chunks = decode_v3(&out).unwrap();
        let kinds: Vec<u16> = chunks.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 0x11, 0x65, 0x0e, 0x0f]);
        let d = Decoded::from_chunks(&chunks);
        assert_eq!(d.extra_correlation, Some(&br#"{"sip":"call-1"}"#[..]));
        assert_eq!(d.proto_type, Some(100));
        p.extra_correlation = Some(b"");
        let mut out = Vec::new();
        encode_v3(&p, &settings, &mut out).unwrap();
        assert!(decode_v3(&out).unwrap().iter().all(|c| c.kind != 0x65));
    }

    #[test]
    fn the_node_name_follows_the_capture_id_in_either_layout() {
        let p = packet(b"SIP", Some(b"cid"));
        for layout in [ChunkLayout::Kamailio, ChunkLayout::OpenSips] {
            let settings = HepSettings {
                capture_id: 7,
                node_name: Some(b"proxy-eu-1".to_vec()),
                layout,
                ..Default::default()
            };
            let mut out = Vec::new();
            encode(&p, &settings, &mut out).unwrap();
            let chunks = decode_v3(&out).unwrap();
            let at = chunks.iter().position(|c| c.kind == chunk::NODE_NAME).unwrap();
            assert_eq!(chunks[at - 1].kind, chunk::CAPTURE_ID, "{layout:?}");
            assert_eq!(chunks[at].data, b"proxy-eu-1");
            assert_eq!(chunks[at].vendor, 0);
            let d = Decoded::from_chunks(&chunks);
            assert_eq!((d.node_name, d.capture_id), (Some(&b"proxy-eu-1"[..]), Some(7)));
            // Byte for byte: the chunk's header says 6 + 10 bytes.
            let start = out.windows(4).position(|w| w == [0, 0, 0, 0x13]).unwrap();
            assert_eq!(&out[start..start + 6], &[0, 0, 0, 0x13, 0, 16]);
        }
        // Empty or unset: no chunk; versions 1 and 2 never carry it.
        for node_name in [None, Some(Vec::new())] {
            let mut out = Vec::new();
            encode_v3(&p, &HepSettings { node_name, ..Default::default() }, &mut out).unwrap();
            assert!(decode_v3(&out).unwrap().iter().all(|c| c.kind != chunk::NODE_NAME));
        }
        let mut v2 = Vec::new();
        let named = HepSettings { version: 2, node_name: Some(b"n".to_vec()), ..Default::default() };
        encode(&p, &named, &mut v2).unwrap();
        let mut plain = Vec::new();
        encode(&p, &HepSettings { version: 2, ..Default::default() }, &mut plain).unwrap();
        assert_eq!(v2, plain);
    }

    #[test]
    fn empty_correlation_and_auth_key_are_left_out() {
        let settings =
            HepSettings { capture_id: 1, auth_key: Some(Vec::new()), version: 3, ..Default::default() };
        let mut out = Vec::new();
        encode_v3(&packet(b"x", Some(b"")), &settings, &mut out).unwrap();
        let kinds: Vec<u16> = decode_v3(&out).unwrap().iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 0x0f]);
    }

    #[test]
    fn size_limit_is_the_16_bit_length_field() {
        let settings = HepSettings::default();
        let overhead = encoded_len_v3(false, [None; 4], b"");
        let mut out = Vec::new();
        let fits = vec![b'a'; MAX_PACKET_LEN - overhead];
        encode_v3(&packet(&fits, None), &settings, &mut out).unwrap();
        assert_eq!(out.len(), MAX_PACKET_LEN);
        assert_eq!(decode_v3(&out).unwrap().last().unwrap().data.len(), fits.len());
        let too_big = vec![b'a'; MAX_PACKET_LEN - overhead + 1];
        assert_eq!(
            encode_v3(&packet(&too_big, None), &settings, &mut out),
            Err(EncodeError::Oversize { len: MAX_PACKET_LEN + 1 })
        );
    }

    #[test]
    fn mixed_families_and_empty_payloads_are_refused() {
        let mut p = packet(b"x", None);
        p.dst = endpoint(Transport::Udp, "[::1]:5060");
        let mut out = Vec::new();
        assert_eq!(encode_v3(&p, &HepSettings::default(), &mut out), Err(EncodeError::MixedFamily));
        assert_eq!(
            encode_v3(&packet(b"", None), &HepSettings::default(), &mut out),
            Err(EncodeError::EmptyPayload)
        );
    }

    #[test]
    fn decoder_rejects_damaged_packets() {
        let mut out = Vec::new();
        encode_v3(&packet(b"payload", None), &HepSettings::default(), &mut out).unwrap();
        assert_eq!(decode_v3(b"HEP2\0\x06"), Err(DecodeError::NotHep3));
        assert_eq!(
            decode_v3(&out[..out.len() - 1]),
            Err(DecodeError::LengthMismatch { header: out.len(), actual: out.len() - 1 })
        );
        let mut short_chunk = out.clone();
        short_chunk[6 + 5] = 3; // first chunk claims 3 bytes, less than its header
        assert_eq!(decode_v3(&short_chunk), Err(DecodeError::BadChunk { offset: 6 }));
        // A truncation inside a chunk is caught even when the header's
        // length is fixed up to match; a cut on a chunk boundary decodes.
        let mut boundaries = vec![HEADER_LEN];
        for c in decode_v3(&out).unwrap() {
            boundaries.push(boundaries.last().unwrap() + CHUNK_HEADER_LEN + c.data.len());
        }
        for cut in HEADER_LEN..out.len() {
            let mut t = out[..cut].to_vec();
            t[4..6].copy_from_slice(&(cut as u16).to_be_bytes());
            assert_eq!(decode_v3(&t).is_ok(), boundaries.contains(&cut), "cut at {cut}");
        }
    }

    /// UDP payloads of the IPv4 frames of a pcap or pcapng capture, over
    /// Ethernet (link type 1) or Linux cooked capture (link type 113).
    fn udp_payloads(capture: &[u8]) -> Vec<Vec<u8>> {
        let u16le = |at: usize| u16::from_le_bytes([capture[at], capture[at + 1]]) as u32;
        let u32le = |at: usize| u32::from_le_bytes(capture[at..at + 4].try_into().unwrap());
        let mut frames = Vec::new();
        let mut link_type = 0;
        if capture[..4] == [0xd4, 0xc3, 0xb2, 0xa1] {
            link_type = u32le(20);
            let mut at = 24;
            while at + 16 <= capture.len() {
                let len = u32le(at + 8) as usize;
                frames.push(&capture[at + 16..at + 16 + len]);
                at += 16 + len;
            }
        } else {
            assert_eq!(u32le(0), 0x0a0d0d0a, "pcapng section header");
            let mut at = 0;
            while at + 12 <= capture.len() {
                let (kind, len) = (u32le(at), u32le(at + 4) as usize);
                match kind {
                    1 => link_type = u16le(at + 8),
                    6 => frames.push(&capture[at + 28..at + 28 + u32le(at + 20) as usize]),
                    _ => {}
                }
                at += len;
            }
        }
        let (link_len, ethertype_at) = match link_type {
            1 => (14, 12),
            113 => (16, 14),
            other => panic!("link type {other}"),
        };
        frames
            .into_iter()
            .filter(|f| f.len() > link_len + 28 && f[ethertype_at..ethertype_at + 2] == [0x08, 0x00])
            .map(|f| &f[link_len..])
            .filter(|ip| ip[9] == 17)
            .map(|ip| {
                let udp = &ip[(ip[0] & 0x0f) as usize * 4..];
                udp[8..u16::from_be_bytes([udp[4], udp[5]]) as usize].to_vec()
            })
            .collect()
    }

    fn shared_capture(name: &str) -> Option<Vec<u8>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/hep").join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                eprintln!("skipped: {} is not available", path.display());
                None
            }
        }
    }

    #[test]
    fn decodes_captures_written_by_other_implementations() {
        let Some(capture) = shared_capture("hep.pcap") else { return };
        let packets = udp_payloads(&capture);
        assert_eq!(packets.len(), 8);
        let mut proto_types = Vec::new();
        for p in &packets {
            let chunks = decode_v3(p).expect("a valid HEPv3 packet");
            let d = Decoded::from_chunks(&chunks);
            assert_eq!(d.family, Some(AF_INET));
            assert!(d.src_ip.is_some() && d.dst_ip.is_some() && d.src_port.is_some() && d.dst_port.is_some());
            assert!(d.time_sec.is_some() && d.capture_id.is_some() && d.payload.is_some());
            proto_types.push(d.proto_type.unwrap());
            if d.proto_type == Some(proto_type::SIP) {
                let payload = d.payload.unwrap();
                assert!(crate::core::sip::extract(payload).is_ok(), "{}", String::from_utf8_lossy(payload));
            }
        }
        proto_types.sort();
        proto_types.dedup();
        assert_eq!(proto_types, [1, 5, 100]);
    }

    #[test]
    fn decodes_compressed_captures_from_captagent() {
        let Some(capture) = shared_capture("hep3_compressed.pcapng") else { return };
        let packets = udp_payloads(&capture);
        assert_eq!(packets.len(), 21);
        for p in &packets {
            let chunks = decode_v3(p).expect("a valid HEPv3 packet");
            let d = Decoded::from_chunks(&chunks);
            assert_eq!(d.capture_id, Some(228));
            assert_eq!(d.auth_key, Some(&b"myHep"[..]));
            // The payload travels zlib-compressed in chunk 0x0010.
            assert!(chunks.iter().any(|c| c.kind == 0x0010 && !c.data.is_empty()));
        }
    }
}
