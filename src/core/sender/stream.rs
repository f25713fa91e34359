//! HEP over TCP and TLS to one collector: HEP frames follow each other on
//! the connection, and their own length fields delimit them. Everything is
//! non-blocking; a sender polls its streams between bursts.
//!
//! A stream connects on first use and reconnects with a growing delay
//! after any failure, whether or not frames are waiting. Frames queued while it is down, or beyond its
//! backlog, are refused at once and counted by the caller; frames that
//! were waiting when the connection broke are reported as lost, and handed
//! back whole with their tags ([`Stream::take_failed`]) for the caller to
//! spool or count.

use crate::core::dest::Destination;
use crate::core::endpoint::Transport;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The collector is unreachable and the next attempt is not due yet.
    NotConnected,
    /// The frames waiting for the socket fill the backlog.
    Backlog,
}

/// What the caller attaches to a frame, to know it again when it comes
/// back undelivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tag {
    /// The hash of the frame's call key.
    pub key: u64,
    /// The caller's id of where the frame was meant to go.
    pub route: u32,
    /// The frame is replayed from the spool, not taken from the queue.
    pub replay: bool,
}

/// What happened on a stream during a poll.
#[derive(Debug, Default)]
pub struct PollReport {
    /// Frames written to the connection.
    pub sent: u64,
    /// Frames that were waiting and are lost because the connection failed.
    pub lost: u64,
    /// The connection came up after having been down.
    pub reconnected: bool,
    /// The connection came up (first time or again).
    pub connected: bool,
    /// Why the connection failed, when it did.
    pub error: Option<String>,
}

enum State {
    /// Not tried yet.
    Idle,
    Down {
        retry_at: Instant,
    },
    Connecting {
        socket: TcpStream,
        since: Instant,
    },
    Up {
        socket: TcpStream,
        tls: Option<Box<ClientConnection>>,
    },
}

pub struct Stream {
    dest: Destination,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    state: State,
    backoff: Duration,
    /// Whether it has ever been up; a later success is a reconnection.
    was_up: bool,
    /// Bytes of frames not yet written whole (the first one may be in
    /// part), and the length and tag of each frame.
    pending: VecDeque<u8>,
    frames: VecDeque<(usize, Tag)>,
    /// Bytes of the first pending frame already written.
    written: usize,
    /// Frames from the spool among them.
    replay_frames: usize,
    /// Frames of a connection that broke: the bytes, back to back, and
    /// the length and tag of each.
    failed: (Vec<u8>, Vec<(usize, Tag)>),
    backlog: usize,
    /// The local address connections are made from, when one is set.
    source_ip: Option<IpAddr>,
}

impl Stream {
    /// A stream to `dest`. For TLS, `tls` gives the client settings and
    /// the name the collector's certificate must carry.
    pub fn new(
        dest: Destination,
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
        backlog: usize,
    ) -> Stream {
        debug_assert_eq!(dest.transport == Transport::Tls, tls.is_some());
        Stream {
            dest,
            tls,
            state: State::Idle,
            backoff: FIRST_BACKOFF,
            was_up: false,
            pending: VecDeque::new(),
            frames: VecDeque::new(),
            written: 0,
            replay_frames: 0,
            failed: (Vec::new(), Vec::new()),
            backlog,
            source_ip: None,
        }
    }

    /// Connects from `ip` (any port), for collectors of its IP family.
    pub fn from_ip(mut self, ip: Option<IpAddr>) -> Stream {
        self.source_ip = ip;
        self
    }

    pub fn destination(&self) -> Destination {
        self.dest
    }

    pub fn has_pending(&self) -> bool {
        !self.frames.is_empty()
    }

    /// Frames queued from the sender's queue and not yet written whole.
    pub fn pending_frames(&self) -> usize {
        self.frames.len() - self.replay_frames
    }

    /// Frames from the spool not yet written whole.
    pub fn pending_replay(&self) -> usize {
        self.replay_frames
    }

    /// The frames that were pending when the connection broke, whole, with
    /// their tags; taken once.
    pub fn take_failed(&mut self) -> Vec<(&[u8], Tag)> {
        let (bytes, frames) = &mut self.failed;
        let mut out = Vec::with_capacity(frames.len());
        let mut at = 0;
        for (len, tag) in frames.drain(..) {
            out.push((&bytes[at..at + len], tag));
            at += len;
        }
        out
    }

    /// Forgets the frames taken by [`Stream::take_failed`].
    pub fn clear_failed(&mut self) {
        self.failed.0.clear();
        self.failed.1.clear();
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// Queues a frame; it goes out at the next polls.
    pub fn queue(&mut self, frame: &[u8], now: Instant) -> Result<(), Refused> {
        self.queue_tagged(frame, Tag::default(), now)
    }

    /// Queues a frame with the caller's tag.
    pub fn queue_tagged(&mut self, frame: &[u8], tag: Tag, now: Instant) -> Result<(), Refused> {
        if let State::Down { retry_at } = self.state {
            if now < retry_at {
                return Err(Refused::NotConnected);
            }
        }
        if self.pending.len() + frame.len() > self.backlog {
            return Err(Refused::Backlog);
        }
        self.pending.extend(frame);
        self.frames.push_back((frame.len(), tag));
        self.replay_frames += tag.replay as usize;
        Ok(())
    }

    /// Connects, handshakes and writes as far as possible without blocking.
    pub fn poll(&mut self, now: Instant) -> PollReport {
        let mut report = PollReport::default();
        if let Err(e) = self.advance(now, &mut report) {
            report.lost += self.frames.len() as u64;
            let (a, b) = self.pending.as_slices();
            self.failed.0.extend_from_slice(a);
            self.failed.0.extend_from_slice(b);
            self.failed.1.extend(self.frames.drain(..));
            self.pending.clear();
            self.written = 0;
            self.replay_frames = 0;
            report.error = Some(e.to_string());
            self.state = State::Down { retry_at: now + self.backoff };
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        report
    }

    fn advance(&mut self, now: Instant, report: &mut PollReport) -> io::Result<()> {
        loop {
            // Taken out while it changes; an error leaves Down, which poll
            // then sets with the back-off.
            match std::mem::replace(&mut self.state, State::Down { retry_at: now }) {
                State::Idle if self.frames.is_empty() => {
                    self.state = State::Idle;
                    return Ok(());
                }
                // Once used, a collector is reconnected as soon as the delay
                // allows, so that traces flow again as soon as it is back.
                State::Down { retry_at } if now < retry_at => {
                    self.state = State::Down { retry_at };
                    return Ok(());
                }
                State::Idle | State::Down { .. } => {
                    self.state =
                        State::Connecting { socket: start_connect(self.dest, self.source_ip)?, since: now };
                }
                State::Connecting { socket, since } => {
                    if !connect_finished(&socket)? {
                        if now.duration_since(since) > CONNECT_TIMEOUT {
                            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
                        }
                        self.state = State::Connecting { socket, since };
                        return Ok(());
                    }
                    let tls = match &self.tls {
                        Some((config, name)) => Some(Box::new(
                            ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?,
                        )),
                        None => None,
                    };
                    self.state = State::Up { socket, tls };
                    self.backoff = FIRST_BACKOFF;
                    report.connected = true;
                    report.reconnected = self.was_up;
                    self.was_up = true;
                }
                State::Up { mut socket, mut tls } => {
                    let written = match tls.as_deref_mut() {
                        None => write_plain(&mut socket, &self.pending, self.written),
                        Some(conn) => write_tls(&mut socket, conn, &self.pending, self.written),
                    };
                    self.state = State::Up { socket, tls };
                    report.sent += self.complete_frames(written?);
                    return Ok(());
                }
            }
        }
    }

    /// Counts the frames that `n` more written bytes complete, and lets
    /// their bytes go.
    fn complete_frames(&mut self, n: usize) -> u64 {
        self.written += n;
        let mut done = 0;
        let mut gone = 0;
        while let Some(&(len, tag)) = self.frames.front() {
            if self.written < len {
                break;
            }
            self.written -= len;
            gone += len;
            self.frames.pop_front();
            self.replay_frames -= tag.replay as usize;
            done += 1;
        }
        self.pending.drain(..gone);
        done
    }
}

/// The pending bytes from `from` on, in at most two slices.
fn unwritten(pending: &VecDeque<u8>, from: usize) -> (&[u8], &[u8]) {
    let (a, b) = pending.as_slices();
    if from < a.len() {
        (&a[from..], b)
    } else {
        (&b[from - a.len()..], &[])
    }
}

/// Writes the pending bytes after the first `from` to a plain TCP
/// connection; returns how many.
fn write_plain(socket: &mut TcpStream, pending: &VecDeque<u8>, from: usize) -> io::Result<usize> {
    check_open(socket)?;
    let mut written = 0;
    while from + written < pending.len() {
        let (front, _) = unwritten(pending, from + written);
        match socket.write(front) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "connection closed")),
            Ok(n) => {
                written += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Moves the TLS connection along and hands it pending bytes; returns how
/// many it took.
fn write_tls(
    socket: &mut TcpStream,
    conn: &mut ClientConnection,
    pending: &VecDeque<u8>,
    from: usize,
) -> io::Result<usize> {
    // Read what the server sends: handshake messages, tickets, alerts.
    loop {
        match conn.read_tls(socket) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")),
            Ok(_) => {
                conn.process_new_packets().map_err(io::Error::other)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // Hand frames over once the handshake is done and what TLS holds is
    // out, so that its buffer stays one burst deep.
    let mut taken = 0;
    if !conn.is_handshaking() && !conn.wants_write() && from < pending.len() {
        let (a, b) = unwritten(pending, from);
        conn.writer().write_all(a)?;
        conn.writer().write_all(b)?;
        taken = pending.len() - from;
    }
    while conn.wants_write() {
        match conn.write_tls(socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(taken)
}

fn start_connect(dest: Destination, source_ip: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(dest.addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = source_ip.filter(|ip| ip.is_ipv6() == dest.addr.is_ipv6()) {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&dest.addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// Whether a non-blocking connect has completed; its error if it failed.
fn connect_finished(socket: &TcpStream) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n <= 0 {
        return Ok(false);
    }
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    socket.peer_addr()?;
    Ok(true)
}

/// Fails when the peer closed or reset the connection. A collector sends
/// nothing over plain TCP, so anything readable is the end.
fn check_open(socket: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 256];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the collector",
                ))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn dest(listener: &TcpListener) -> Destination {
        Destination { addr: listener.local_addr().unwrap(), transport: Transport::Tcp }
    }

    fn poll_until(stream: &mut Stream, mut done: impl FnMut(&Stream, &PollReport) -> bool) -> PollReport {
        let mut total = PollReport::default();
        for _ in 0..500 {
            let r = stream.poll(Instant::now());
            total.sent += r.sent;
            total.lost += r.lost;
            total.reconnected |= r.reconnected;
            if r.error.is_some() {
                total.error = r.error;
            }
            if done(stream, &total) {
                return total;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("stream did not get there: {total:?}");
    }

    #[test]
    fn frames_arrive_back_to_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut stream = Stream::new(dest(&listener), None, 1 << 20);
        for i in 0..100u8 {
            stream.queue(&[i; 100], Instant::now()).unwrap();
        }
        let report = poll_until(&mut stream, |_, r| r.sent == 100);
        assert_eq!(report.lost, 0);
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = vec![0u8; 100 * 100];
        peer.read_exact(&mut got).unwrap();
        for (i, frame) in got.chunks(100).enumerate() {
            assert!(frame.iter().all(|&b| b == i as u8));
        }
    }

    #[test]
    fn refused_connection_backs_off_and_reconnects_later() {
        // Take a port, then free it so that connecting is refused.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = Destination { addr: ([127, 0, 0, 1], port).into(), transport: Transport::Tcp };
        let mut stream = Stream::new(d, None, 1 << 20);
        stream.queue(b"lost", Instant::now()).unwrap();
        let report = poll_until(&mut stream, |_, r| r.error.is_some());
        assert_eq!(report.lost, 1);
        // Within the back-off, frames are refused at once.
        assert_eq!(stream.queue(b"x", Instant::now()), Err(Refused::NotConnected));
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        std::thread::sleep(FIRST_BACKOFF);
        stream.queue(b"hello", Instant::now()).unwrap();
        let report = poll_until(&mut stream, |_, r| r.sent == 1);
        assert!(!report.reconnected, "first success is not a reconnection");
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");

        // The collector goes away: the stream notices and comes back.
        drop(peer);
        drop(listener);
        let report = poll_until(&mut stream, |s, _| !s.is_up());
        assert!(report.error.is_some());
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        std::thread::sleep(FIRST_BACKOFF);
        stream.queue(b"again", Instant::now()).unwrap();
        let report = poll_until(&mut stream, |_, r| r.sent == 1);
        assert!(report.reconnected);
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"again");
    }

    #[test]
    fn backlog_is_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut stream = Stream::new(dest(&listener), None, 250);
        assert!(stream.queue(&[0; 100], Instant::now()).is_ok());
        assert!(stream.queue(&[0; 100], Instant::now()).is_ok());
        assert_eq!(stream.queue(&[0; 100], Instant::now()), Err(Refused::Backlog));
    }
}
