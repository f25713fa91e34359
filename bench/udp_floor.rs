//! The kernel's share of sending HEP over UDP on this machine: what any
//! tracer pays per datagram before doing any work of its own.
//!
//! It sends `count` datagrams of `size` bytes to a collector on loopback
//! through the sender's own `UdpOut` (connected socket, sendmmsg), in bursts
//! of `burst` paced like the module's sender (one burst per `interval_ms`),
//! and prints the CPU time of the sending thread per datagram. The receiving
//! side is a thread that blocks in recv, as bench/run.py's collector does.
//!
//! Usage: udp_floor COUNT SIZE [BURST] [INTERVAL_MS]
//! Prints one line: `floor_us_per_datagram user=U sys=S total=T`.

use siptrace::core::sender::udp::UdpOut;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn thread_cpu() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

fn arg(args: &[String], i: usize, default: Option<usize>) -> usize {
    match args.get(i) {
        Some(a) => a.parse().unwrap_or_else(|_| panic!("argument {i} is not a number: {a}")),
        None => default.unwrap_or_else(|| panic!("usage: udp_floor COUNT SIZE [BURST] [INTERVAL_MS]")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = arg(&args, 1, None);
    let size = arg(&args, 2, None);
    let burst = arg(&args, 3, Some(64)).max(1);
    let interval = Duration::from_millis(arg(&args, 4, Some(20)) as u64);

    let collector = UdpSocket::bind("127.0.0.1:0").expect("bind the collector");
    collector.set_read_timeout(Some(Duration::from_millis(200))).expect("collector timeout");
    let to: SocketAddr = collector.local_addr().expect("collector address");
    let received = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let receiver = {
        let (received, running) = (received.clone(), running.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70000];
            while running.load(Ordering::Relaxed) {
                if collector.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let payload = vec![b'x'; size];
    let bursts: Vec<(SocketAddr, &[u8])> = vec![(to, &payload[..]); burst];
    let mut out = UdpOut::new();
    let (user0, sys0) = thread_cpu();
    let mut sent = 0;
    while sent < count {
        let n = burst.min(count - sent);
        sent += out.send_burst(&bursts[..n]).sent.max(1);
        std::thread::sleep(interval);
    }
    let (user1, sys1) = thread_cpu();
    std::thread::sleep(Duration::from_millis(300));
    running.store(false, Ordering::Relaxed);
    receiver.join().expect("receiver thread");

    let per = |seconds: f64| seconds * 1e6 / count as f64;
    let (user, sys) = (per(user1 - user0), per(sys1 - sys0));
    eprintln!("udp_floor: {count} datagrams of {size} bytes, {} received", received.load(Ordering::Relaxed));
    println!("floor_us_per_datagram user={user:.2} sys={sys:.2} total={:.2}", user + sys);
}
