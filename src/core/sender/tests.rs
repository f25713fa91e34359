use super::*;
use crate::core::endpoint::Endpoint;
use crate::core::hep::{decode_v3, Decoded};
use crate::core::record::{Direction, Timestamp};
use crate::core::ring::tests::shared_memory;
use std::cell::RefCell;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::AtomicU64;

/// callid, method, status, fromip, direction.
type StoredRow = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

#[derive(Default)]
struct FakeHost {
    rows: RefCell<Vec<StoredRow>>,
    fail_rows_after: Option<usize>,
    db_down: bool,
    drops: RefCell<Vec<(DropReason, u64)>>,
}

impl SenderHost for FakeHost {
    fn store_rows(&mut self, rows: &[Row<'_>]) -> (usize, Option<(DropReason, String)>) {
        if self.db_down {
            return (0, Some((DropReason::DbUnavailable, "no database connection".into())));
        }
        let take = self.fail_rows_after.map_or(rows.len(), |n| n.min(rows.len()));
        for r in &rows[..take] {
            self.rows.borrow_mut().push((
                r.callid.to_vec(),
                r.method.to_vec(),
                r.status.to_vec(),
                r.fromip.to_vec(),
                r.direction.as_str().as_bytes().to_vec(),
            ));
        }
        (take, (take < rows.len()).then(|| (DropReason::DbFailed, "disk full".to_string())))
    }
    fn tls_for(&self, _dest: Destination) -> Option<(Arc<ClientConfig>, ServerName<'static>)> {
        None
    }
    fn dropped(&self, reason: DropReason, count: u64, _detail: &dyn Display) {
        self.drops.borrow_mut().push((reason, count));
    }
    fn connection(&self, _dest: Destination, _up: bool, _detail: &dyn Display) {}
}

fn ring() -> Ring {
    let len = Ring::header_size() + (256 << 10);
    // SAFETY: a fresh shared mapping of `len` bytes, kept for the test.
    unsafe { Ring::init(shared_memory(len), len).unwrap() }
}

fn message(n: u32, reply: bool) -> Vec<u8> {
    let start = if reply { "SIP/2.0 200 OK".to_string() } else { "OPTIONS sip:x SIP/2.0".to_string() };
    format!("{start}\r\nCall-ID: call-{n}\r\nFrom: <sip:a@b>;tag=f{n}\r\nTo: <sip:c@d>\r\nCSeq: {n} OPTIONS\r\n\r\n")
        .into_bytes()
}

fn push(ring: &Ring, payload: &[u8], outputs: &Outputs) {
    let record = TraceRecord {
        time: Timestamp { secs: 0, usecs: 0 },
        direction: Direction::In,
        src: Endpoint::new(Transport::Udp, "192.0.2.1".parse().unwrap(), 5060),
        dst: Endpoint::new(Transport::Udp, "192.0.2.2".parse().unwrap(), 5080),
        payload,
        correlation_id: None,
        extra_correlation: None,
        proto_type: crate::core::hep::proto_type::SIP,
        traced_users: None,
    };
    let len = wire::encoded_len(&record, outputs);
    ring.push(len, |buf| wire::encode(buf, &record, outputs, Timestamp { secs: 1_800_000_000, usecs: 7 }))
        .unwrap();
}

fn settings(batch_size: usize) -> SenderSettings {
    SenderSettings {
        batch_size,
        flush_interval: Duration::from_millis(1),
        hep: HepSettings { capture_id: 5, auth_key: None, version: 3, ..Default::default() },
        stream_backlog: 1 << 20,
        db_flush_interval: Duration::ZERO,
        db_batch_size: 1000,
        xheaders_write: false,
        source_ip: None,
        delivery: Default::default(),
        spool_rows: true,
    }
}

fn dest(addr: SocketAddr, transport: Transport) -> Destination {
    Destination { addr, transport }
}

#[test]
fn records_become_rows_hep_packets_and_copies() {
    let ring = ring();
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let copies = UdpSocket::bind("127.0.0.1:0").unwrap();
    copies.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut outputs = Outputs { db: true, ..Outputs::default() };
    outputs.hep.push(dest(collector.local_addr().unwrap(), Transport::Udp));
    outputs.duplicate.push(dest(copies.local_addr().unwrap(), Transport::Udp));
    for n in 0..10 {
        push(&ring, &message(n, n % 2 == 1), &outputs);
    }
    let counters = Counters::default();
    let mut sender = Sender::new(settings(4), &counters);
    let mut host = FakeHost::default();
    assert_eq!(sender.step(&ring, &mut host), 4, "one batch at a time");
    assert_eq!(sender.step(&ring, &mut host), 4);
    assert_eq!(sender.step(&ring, &mut host), 2);
    assert_eq!(sender.step(&ring, &mut host), 0);
    assert_eq!(ring.depth(), 0);

    let rows = host.rows.borrow();
    assert_eq!(rows.len(), 10);
    assert_eq!(
        rows[1],
        (
            b"call-1".to_vec(),
            b"OPTIONS".to_vec(),
            b"200".to_vec(),
            b"udp:192.0.2.1:5060".to_vec(),
            b"in".to_vec()
        )
    );
    let mut buf = vec![0u8; 2048];
    for n in 0..10 {
        let len = collector.recv(&mut buf).unwrap();
        let chunks = decode_v3(&buf[..len]).unwrap();
        let d = Decoded::from_chunks(&chunks);
        assert_eq!(d.payload, Some(message(n, n % 2 == 1).as_slice()), "HEP packets in queue order");
        assert_eq!(d.correlation_id, Some(format!("call-{n}").as_bytes()));
        assert_eq!((d.time_sec, d.time_usec, d.capture_id), (Some(1_800_000_000), Some(7), Some(5)));
        let len = copies.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], message(n, n % 2 == 1).as_slice());
    }
    assert_eq!(counters.dequeued.load(std::sync::atomic::Ordering::Relaxed), 10);
    assert_eq!(counters.hep_sent.load(std::sync::atomic::Ordering::Relaxed), 10);
    assert_eq!(counters.duplicates_sent.load(std::sync::atomic::Ordering::Relaxed), 10);
    assert_eq!(counters.db_rows.load(std::sync::atomic::Ordering::Relaxed), 10);
    assert_eq!(counters.db_batches.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(counters.traced_replies.load(std::sync::atomic::Ordering::Relaxed), 5);
    assert_eq!(counters.dropped_total(), 0);
}

#[test]
fn rows_the_database_refuses_are_counted() {
    let ring = ring();
    let outputs = Outputs { db: true, ..Outputs::default() };
    for n in 0..5 {
        push(&ring, &message(n, false), &outputs);
    }
    push(&ring, b"garbage, not SIP", &outputs);
    let counters = Counters::default();
    let mut host = FakeHost { fail_rows_after: Some(3), ..FakeHost::default() };
    Sender::new(settings(64), &counters).step(&ring, &mut host);
    assert_eq!(counters.dropped(DropReason::DbFailed), 2);
    assert_eq!(counters.dropped(DropReason::Unparsable), 1);
    assert_eq!(host.rows.borrow().len(), 3);
    assert_eq!(*host.drops.borrow(), [(DropReason::Unparsable, 1), (DropReason::DbFailed, 2)]);
}

#[test]
fn hep_over_tcp_reaches_the_collector_framed() {
    let ring = ring();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut outputs = Outputs::default();
    outputs.hep.push(dest(listener.local_addr().unwrap(), Transport::Tcp));
    for n in 0..20 {
        push(&ring, &message(n, false), &outputs);
    }
    let counters = Counters::default();
    let mut sender = Sender::new(settings(64), &counters);
    let mut host = FakeHost::default();
    sender.step(&ring, &mut host);
    for _ in 0..200 {
        if counters.hep_sent.load(std::sync::atomic::Ordering::Relaxed) == 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        sender.step(&ring, &mut host);
    }
    assert_eq!(counters.hep_sent.load(std::sync::atomic::Ordering::Relaxed), 20, "{:?}", host.drops.borrow());
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for n in 0..20 {
        let mut head = [0u8; 6];
        peer.read_exact(&mut head).unwrap();
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        let mut frame = head.to_vec();
        frame.resize(len, 0);
        peer.read_exact(&mut frame[6..]).unwrap();
        let d = Decoded::from_chunks(&decode_v3(&frame).unwrap()).payload.map(<[u8]>::to_vec);
        assert_eq!(d, Some(message(n, false)));
    }
}

#[test]
fn an_unreachable_tcp_collector_costs_counted_drops_only() {
    let ring = ring();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut outputs = Outputs::default();
    outputs.hep.push(dest(([127, 0, 0, 1], port).into(), Transport::Tcp));
    let counters = Counters::default();
    let mut sender = Sender::new(settings(64), &counters);
    let mut host = FakeHost::default();
    for n in 0..50 {
        push(&ring, &message(n, false), &outputs);
        sender.step(&ring, &mut host);
    }
    let lost = counters.dropped(DropReason::SendFailed) + counters.dropped(DropReason::NotConnected);
    assert_eq!(lost, 50, "every record is either lost on the failed connect or refused while down");
    assert_eq!(counters.hep_sent.load(std::sync::atomic::Ordering::Relaxed), 0);
}

fn spool_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("siptrace-sender-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn load(c: &AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reads `n` HEP frames from a TCP peer; returns their payloads.
fn read_frames(peer: &mut std::net::TcpStream, n: usize) -> Vec<Vec<u8>> {
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (0..n)
        .map(|_| {
            let mut head = [0u8; 6];
            peer.read_exact(&mut head).unwrap();
            let len = u16::from_be_bytes([head[4], head[5]]) as usize;
            let mut frame = head.to_vec();
            frame.resize(len, 0);
            peer.read_exact(&mut frame[6..]).unwrap();
            Decoded::from_chunks(&decode_v3(&frame).unwrap()).payload.unwrap().to_vec()
        })
        .collect()
}

#[test]
fn a_tcp_outage_with_a_spool_loses_nothing_and_replays_in_order() {
    let ring = ring();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut outputs = Outputs::default();
    outputs.hep.push(dest(([127, 0, 0, 1], port).into(), Transport::Tcp));
    let counters = Counters::default();
    let mut s = settings(64);
    s.delivery.spool_replay_rate = 100_000;
    let mut sender = Sender::new(s, &counters);
    let dir = spool_dir("outage");
    assert_eq!(sender.open_spool(&dir, 0, 1), Ok(None));
    let mut host = FakeHost::default();
    for n in 0..50 {
        push(&ring, &message(n, false), &outputs);
        sender.step(&ring, &mut host);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(counters.dropped_total(), 0, "{:?}", host.drops.borrow());
    assert_eq!(load(&counters.spooled), 50);
    assert_eq!(counters.spool_records_total(), 50);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    for _ in 0..500 {
        if load(&counters.replayed) == 50 && counters.spool_records_total() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        sender.step(&ring, &mut host);
    }
    assert_eq!(load(&counters.replayed), 50);
    assert_eq!(load(&counters.hep_sent), 50);
    let (mut peer, _) = listener.accept().unwrap();
    let got = read_frames(&mut peer, 50);
    for (n, p) in got.iter().enumerate() {
        assert_eq!(*p, message(n as u32, false), "in order, once each");
    }
    let slot = counters.destinations[0].destination().unwrap();
    assert_eq!(slot.addr.port(), port);
    assert_eq!(load(&counters.destinations[0].sent), 50);
    assert_eq!(load(&counters.destinations[0].up), 1);
    assert!(load(&counters.destinations[0].downs) >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shard_gives_each_call_to_one_collector_and_moves_only_a_dead_ones_calls() {
    let ring = ring();
    let sockets: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let mut outputs = Outputs::default();
    for s in &sockets {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        outputs.hep.push(dest(s.local_addr().unwrap(), Transport::Udp));
    }
    let counters = Counters::default();
    let mut st = settings(64);
    st.delivery.distribution = Distribution::Shard;
    let mut sender = Sender::new(st, &counters);
    let mut host = FakeHost::default();
    for n in 0..300 {
        push(&ring, &message(n, false), &outputs);
        push(&ring, &message(n, true), &outputs);
        if n % 20 == 0 {
            sender.step(&ring, &mut host);
        }
    }
    while sender.step(&ring, &mut host) > 0 {}
    let mut board = Board::new(None, false);
    let now = Instant::now();
    let mut buf = vec![0u8; 4096];
    for (i, s) in sockets.iter().enumerate() {
        let mut calls = Vec::new();
        while let Ok(len) = s.recv(&mut buf) {
            let d = Decoded::from_chunks(&decode_v3(&buf[..len]).unwrap());
            calls.push(d.correlation_id.unwrap().to_vec());
        }
        assert!((150..=250).contains(&calls.len()), "collector {i}: {}", calls.len());
        for c in calls.chunks(2) {
            assert_eq!(c[0], c[1], "both records of a call on one collector");
            let want = cluster::shard(&c[0], &outputs.hep, &mut board, now).unwrap();
            assert_eq!(want, outputs.hep[i]);
        }
    }
    assert_eq!(load(&counters.hep_sent), 600);
}

#[test]
fn rows_wait_in_the_spool_while_the_database_is_away() {
    let ring = ring();
    let outputs = Outputs { db: true, ..Outputs::default() };
    let counters = Counters::default();
    let mut s = settings(64);
    s.delivery.spool_replay_rate = 100_000;
    let mut sender = Sender::new(s, &counters);
    let dir = spool_dir("rows");
    sender.open_spool(&dir, 0, 1).unwrap();
    let mut host = FakeHost { db_down: true, ..FakeHost::default() };
    for n in 0..30 {
        push(&ring, &message(n, false), &outputs);
        sender.step(&ring, &mut host);
    }
    assert_eq!(counters.dropped_total(), 0);
    assert_eq!(load(&counters.spooled), 30);
    host.db_down = false;
    for _ in 0..300 {
        if host.rows.borrow().len() == 30 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        sender.step(&ring, &mut host);
    }
    let rows = host.rows.borrow();
    assert_eq!(rows.len(), 30);
    let mut ids: Vec<Vec<u8>> = rows.iter().map(|r| r.0.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 30, "each row once");
    assert_eq!(load(&counters.replayed), 30);
    assert_eq!(counters.spool_records_total(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host whose rows may not wait in the spool (OpenSIPS's) has them
/// counted as dropped while the database is away, with a spool or not.
#[test]
fn rows_do_not_wait_in_the_spool_when_the_host_says_so() {
    let ring = ring();
    let outputs = Outputs { db: true, ..Outputs::default() };
    let counters = Counters::default();
    let mut s = settings(64);
    s.spool_rows = false;
    let mut sender = Sender::new(s, &counters);
    let dir = spool_dir("rows-not-spooled");
    sender.open_spool(&dir, 0, 1).unwrap();
    let mut host = FakeHost { db_down: true, ..FakeHost::default() };
    for n in 0..10 {
        push(&ring, &message(n, false), &outputs);
        sender.step(&ring, &mut host);
    }
    assert_eq!(load(&counters.spooled), 0);
    assert_eq!(counters.dropped(DropReason::DbUnavailable), 10);
    assert_eq!(counters.spool_records_total(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sending process's own cost per record, without a server around it:
/// one collector, three sharded, and one with an idle spool.
#[test]
#[ignore = "a timing, not a check: cargo test --release --lib sender_cost -- --ignored --nocapture"]
fn sender_cost_per_record() {
    let sockets: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let dests: Vec<Destination> =
        sockets.iter().map(|s| dest(s.local_addr().unwrap(), Transport::Udp)).collect();
    let dir = spool_dir("cost");
    for (name, n_dest, distribution, spool) in [
        ("one collector", 1, Distribution::Copy, false),
        ("shard over three", 3, Distribution::Shard, false),
        ("one collector, idle spool", 1, Distribution::Copy, true),
        ("one collector", 1, Distribution::Copy, false),
        ("shard over three", 3, Distribution::Shard, false),
        ("one collector, idle spool", 1, Distribution::Copy, true),
    ] {
        let ring = ring();
        let mut outputs = Outputs::default();
        outputs.hep.extend(dests.iter().take(n_dest).copied());
        let counters = Counters::default();
        let mut s = settings(64);
        s.delivery.distribution = distribution;
        let mut sender = Sender::new(s, &counters);
        if spool {
            sender.open_spool(&dir, 0, 1).unwrap();
        }
        let mut host = FakeHost::default();
        let payloads: Vec<Vec<u8>> = (0..64).map(|n| message(n, n % 2 == 1)).collect();
        let mut spent = Duration::ZERO;
        let rounds = 2000;
        for _ in 0..rounds {
            for p in &payloads {
                push(&ring, p, &outputs);
            }
            let t = Instant::now();
            sender.step(&ring, &mut host);
            spent += t.elapsed();
            for s in &sockets {
                s.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 2048];
                while s.recv(&mut buf).is_ok() {}
            }
        }
        let records = rounds * payloads.len();
        println!("{name}: {:.2} µs per record", spent.as_secs_f64() * 1e6 / records as f64);
        assert_eq!(load(&counters.hep_sent) + counters.dropped_total(), records as u64);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
