//! The disk spool's segment reader (`core::sender::spool::scan`), which
//! reads whatever a crash, a full disk or a stray file left in spool_dir.
//!
//! - Raw fuzz bytes must not panic; the frames it keeps are in order,
//!   inside the buffer, and each reads back as a target and an entry.
//! - A frame the spool wrote, between two stretches of noise, comes back
//!   whole and the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use siptrace::core::dest::Destination;
use siptrace::core::endpoint::Transport;
use siptrace::core::sender::spool::{frame, read_frame, scan, Kind, Target};
use siptrace::core::settings::Distribution;

fuzz_target!(|data: &[u8]| {
    let found = scan(data, 0);
    let mut last = 0;
    for &(start, end) in &found.frames {
        assert!(start >= last && start < end && end <= data.len());
        last = end;
        assert!(read_frame(&data[start..end]).is_some());
    }

    let (noise, payload) = data.split_at(data.len() / 2);
    let target = Target {
        kind: Kind::Hep,
        distribution: Distribution::Shard,
        dests: vec![Destination { addr: ([127, 0, 0, 1], 9060).into(), transport: Transport::Tcp }],
    };
    let written = frame(&target, 7, 9, payload);
    let mut segment = noise.to_vec();
    segment.extend_from_slice(&written);
    segment.extend_from_slice(noise);
    let found = scan(&segment, 0);
    let back = found.frames.iter().find(|&&(s, e)| segment[s..e] == written[..]);
    let &(s, e) = back.expect("the written frame comes back");
    let (t, entry) = read_frame(&segment[s..e]).unwrap();
    assert_eq!((t, entry.key, entry.time_us, entry.data.as_slice()), (target, 7, 9, payload));
});
