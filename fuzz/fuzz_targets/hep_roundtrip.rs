//! The HEP encoder, checked with the decoder: a packet built from the
//! input is encoded with `hep::encode` (version 1, 2 or 3), `encode_v3`
//! and as a `TraceRecord`. A v3 packet decodes back to every field it was
//! given, in Kamailio's chunk order; a v1/v2 packet has the fixed layout;
//! the length is what the layouts add up to; a refused packet is refused
//! for the right reason and leaves the output buffer as it was.
//! (`hep_decode` feeds the decoder raw bytes.)

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use siptrace::core::endpoint::Endpoint;
use siptrace::core::hep::{
    self, chunk, proto_type, ChunkLayout, Decoded, EncodeError, HepPacket, HepSettings,
};
use siptrace::core::record::{Direction, Timestamp, TraceRecord};
use siptrace::core::sip;
use siptrace_rs_fuzz::{bytes_up_to, check_hep_decoder, endpoint_pair};
use std::net::IpAddr;

struct Input {
    src: Endpoint,
    dst: Endpoint,
    mixed: bool,
    time: Timestamp,
    proto_type: u8,
    correlation_id: Option<Vec<u8>>,
    extra_correlation: Option<Vec<u8>>,
    payload: Vec<u8>,
    settings: HepSettings,
    /// Bytes already in the output buffer, which encoding must keep.
    prefix: Vec<u8>,
    /// Whether the record is encoded with the fields of its SIP payload.
    with_fields: bool,
}

fn input(u: &mut Unstructured<'_>) -> Result<Input> {
    let (src, dst, mixed) = endpoint_pair(u)?;
    let types = [proto_type::SIP, proto_type::LOG, proto_type::RPC, proto_type::REST, proto_type::NET];
    Ok(Input {
        src,
        dst,
        mixed,
        time: Timestamp { secs: u.arbitrary()?, usecs: u.arbitrary()? },
        proto_type: if u.ratio(3, 4)? { *u.choose(&types)? } else { u.arbitrary()? },
        correlation_id: u.arbitrary()?,
        extra_correlation: u.arbitrary()?,
        payload: bytes_up_to(u, hep::MAX_PACKET_LEN)?,
        settings: HepSettings {
            capture_id: u.arbitrary()?,
            auth_key: u.arbitrary()?,
            version: if u.ratio(3, 4)? { u.int_in_range(1..=3)? } else { u.arbitrary()? },
            layout: if u.arbitrary()? { ChunkLayout::OpenSips } else { ChunkLayout::Kamailio },
            node_name: u.arbitrary()?,
        },
        prefix: u.arbitrary()?,
        with_fields: u.arbitrary()?,
    })
}

fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn non_empty(v: Option<&[u8]>) -> Option<&[u8]> {
    v.filter(|v| !v.is_empty())
}

/// The length of `p` encoded, worked out from the layouts, not the encoder.
fn expected_len(p: &HepPacket<'_>, settings: &HepSettings, v3: bool) -> usize {
    let addr = if p.src.addr.is_ipv6() { 16 } else { 4 };
    if !v3 {
        let time_header = if settings.version == 2 { 12 } else { 0 };
        return 8 + 2 * addr + time_header + p.payload.len();
    }
    let optional =
        [p.correlation_id, p.extra_correlation, settings.auth_key.as_deref(), settings.node_name.as_deref()];
    let chunks = [1, 1, addr, addr, 2, 2, 4, 4, 1, 4, p.payload.len()].into_iter();
    6 + chunks.chain(optional.into_iter().flat_map(non_empty).map(<[u8]>::len)).map(|n| 6 + n).sum::<usize>()
}

/// Checks a successful or refused encoding of `p`.
fn check_encoding(
    p: &HepPacket<'_>,
    settings: &HepSettings,
    mixed: bool,
    prefix: &[u8],
    v3: bool,
) -> Vec<u8> {
    let mut out = prefix.to_vec();
    let result = if v3 { hep::encode_v3(p, settings, &mut out) } else { hep::encode(p, settings, &mut out) };
    let v3 = v3 || !matches!(settings.version, 1 | 2);
    match result {
        Err(e) => {
            assert_eq!(out, prefix, "a refused packet changed the buffer");
            match e {
                EncodeError::EmptyPayload => assert!(p.payload.is_empty()),
                EncodeError::MixedFamily => assert!(mixed && !p.payload.is_empty()),
                EncodeError::Oversize { len } => {
                    assert!(!mixed && !p.payload.is_empty());
                    assert_eq!(len, expected_len(p, settings, v3));
                    assert!(len > hep::MAX_PACKET_LEN);
                }
            }
            return Vec::new();
        }
        Ok(()) => assert!(!p.payload.is_empty() && !mixed, "encoded what must be refused"),
    }
    assert_eq!(&out[..prefix.len()], prefix, "encoding changed what the buffer held");
    let packet = out.split_off(prefix.len());
    assert_eq!(packet.len(), expected_len(p, settings, v3));
    assert!(packet.len() <= hep::MAX_PACKET_LEN);
    if v3 {
        check_v3(p, settings, &packet);
    } else {
        check_v1_v2(p, settings, &packet);
    }
    packet
}

/// The IP protocol a packet names: the source's in Kamailio's layout, the
/// destination's in OpenSIPS's (they differ with `trace_local_ip`).
fn named_proto(p: &HepPacket<'_>, settings: &HepSettings) -> u8 {
    match settings.layout {
        ChunkLayout::Kamailio => p.src.transport.hep_ip_proto(),
        ChunkLayout::OpenSips => p.dst.transport.hep_ip_proto(),
    }
}

/// A v3 packet decodes to exactly what was encoded, in Kamailio's order.
fn check_v3(p: &HepPacket<'_>, settings: &HepSettings, packet: &[u8]) {
    let chunks = hep::decode_v3(packet).expect("our own packet decodes");
    assert!(chunks.iter().all(|c| c.vendor == 0));
    let d = Decoded::from_chunks(&chunks);
    let v6 = p.src.addr.is_ipv6();
    let correlation = non_empty(p.correlation_id);
    let extra = non_empty(p.extra_correlation);
    let auth_key = non_empty(settings.auth_key.as_deref());
    let node_name = non_empty(settings.node_name.as_deref());
    let expected = Decoded {
        family: Some(if v6 { 10 } else { 2 }),
        ip_proto: Some(named_proto(p, settings)),
        src_ip: Some(p.src.addr.ip()),
        dst_ip: Some(p.dst.addr.ip()),
        src_port: Some(p.src.addr.port()),
        dst_port: Some(p.dst.addr.port()),
        time_sec: Some(p.time_sec),
        time_usec: Some(p.time_usec),
        proto_type: Some(p.proto_type),
        capture_id: Some(settings.capture_id),
        auth_key,
        correlation_id: correlation,
        extra_correlation: extra,
        node_name,
        payload: Some(p.payload),
    };
    assert_eq!(d, expected);

    let addresses = if v6 { [chunk::SRC_IP6, chunk::DST_IP6] } else { [chunk::SRC_IP4, chunk::DST_IP4] };
    let mut kinds = vec![chunk::IP_FAMILY, chunk::IP_PROTO];
    if settings.layout == ChunkLayout::Kamailio {
        kinds.extend(addresses);
    }
    kinds.extend([chunk::SRC_PORT, chunk::DST_PORT, chunk::TIME_SEC, chunk::TIME_USEC]);
    kinds.extend([chunk::PROTO_TYPE, chunk::CAPTURE_ID]);
    kinds.extend(node_name.map(|_| chunk::NODE_NAME));
    match settings.layout {
        // Kamailio's order: correlations and key before the payload.
        ChunkLayout::Kamailio => {
            kinds.extend(correlation.map(|_| chunk::CORRELATION_ID));
            kinds.extend(extra.map(|_| chunk::EXTRA_CORRELATION));
            kinds.extend(auth_key.map(|_| chunk::AUTH_KEY));
            kinds.push(chunk::PAYLOAD);
        }
        // proto_hep's: addresses after the header, correlations last.
        ChunkLayout::OpenSips => {
            kinds.extend(addresses);
            kinds.extend(auth_key.map(|_| chunk::AUTH_KEY));
            kinds.push(chunk::PAYLOAD);
            kinds.extend(extra.map(|_| chunk::EXTRA_CORRELATION));
            kinds.extend(correlation.map(|_| chunk::CORRELATION_ID));
        }
    }
    assert_eq!(chunks.iter().map(|c| c.kind).collect::<Vec<_>>(), kinds);
}

/// v1 and v2: the fixed header, the addresses, v2's time header, the payload.
fn check_v1_v2(p: &HepPacket<'_>, settings: &HepSettings, packet: &[u8]) {
    let addresses = [ip_octets(p.src.addr.ip()), ip_octets(p.dst.addr.ip())].concat();
    let header_len = 8 + addresses.len();
    let mut expected = vec![
        settings.version,
        header_len as u8,
        if p.src.addr.is_ipv6() { 10 } else { 2 },
        named_proto(p, settings),
    ];
    expected.extend(p.src.addr.port().to_be_bytes());
    expected.extend(p.dst.addr.port().to_be_bytes());
    expected.extend(addresses);
    if settings.version == 2 {
        expected.extend(p.time_sec.to_le_bytes());
        expected.extend(p.time_usec.to_le_bytes());
        expected.extend((settings.capture_id as u16).to_le_bytes());
        expected.extend([0, 0]);
    }
    expected.extend_from_slice(p.payload);
    assert!(packet == expected, "v{} packet differs from its layout", settings.version);
}

fuzz_target!(|data: &[u8]| {
    let Ok(i) = input(&mut Unstructured::new(data)) else { return };
    let packet = HepPacket {
        src: i.src,
        dst: i.dst,
        time_sec: i.time.secs as u32,
        time_usec: i.time.usecs,
        proto_type: i.proto_type,
        correlation_id: i.correlation_id.as_deref(),
        extra_correlation: i.extra_correlation.as_deref(),
        payload: &i.payload,
    };
    let encoded = check_encoding(&packet, &i.settings, i.mixed, &i.prefix, false);
    check_hep_decoder(&encoded);
    check_encoding(&packet, &i.settings, i.mixed, &i.prefix, true);

    // The same as a trace record: its HEP correlation is the one given,
    // else the Call-ID; a record that is not SIP always goes as HEPv3.
    let record = TraceRecord {
        time: i.time,
        direction: Direction::In,
        src: i.src,
        dst: i.dst,
        payload: &i.payload,
        correlation_id: i.correlation_id.as_deref(),
        extra_correlation: i.extra_correlation.as_deref(),
        proto_type: i.proto_type,
        traced_users: None,
    };
    let fields = if i.with_fields { sip::extract(&i.payload).ok() } else { None };
    let correlation = non_empty(i.correlation_id.as_deref()).or_else(|| sip::call_id(&i.payload));
    assert_eq!(record.hep_correlation(fields.as_ref()), correlation);
    let mut out = i.prefix.clone();
    let result = record.encode_hep(fields.as_ref(), &i.settings, &mut out);
    let expected = HepPacket { correlation_id: correlation, ..packet };
    let mut again = i.prefix.clone();
    let expected_result = if i.proto_type == proto_type::SIP {
        hep::encode(&expected, &i.settings, &mut again)
    } else {
        hep::encode_v3(&expected, &i.settings, &mut again)
    };
    assert_eq!(result, expected_result);
    assert!(out == again, "the record encodes differently from its packet");
    if result.is_ok() && (i.proto_type != proto_type::SIP || !matches!(i.settings.version, 1 | 2)) {
        check_v3(&expected, &i.settings, &out[i.prefix.len()..]);
    }
});
