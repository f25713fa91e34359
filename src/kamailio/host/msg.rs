//! A SIP message as Kamailio holds it (`sip_msg`), and what onsend_route
//! sees of a message being sent (`p_onsend`).

use super::net::Received;
use super::socket::{DestInfo, Socket};
use super::sys;
use crate::core::endpoint::Endpoint;
use crate::ffi::host_bytes;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// A message Kamailio is working on, valid for `'a`: the call of a script
/// function, a callback. It stays a pointer, not a reference: Kamailio's
/// own code changes the message (its parsed headers, its flags) while we
/// hold it, so fields are read when asked for.
#[derive(Clone, Copy)]
pub struct Msg<'a> {
    ptr: NonNull<sys::sip_msg>,
    _life: PhantomData<&'a sys::sip_msg>,
}

/// `sip_msg.msg_flags`: 64 bits from Kamailio 5.8 on (`msg_flags_t`), 32
/// before; `FL_SIPTRACE` is one of the low bits in both.
#[cfg(kamailio_6_0)]
type MsgFlags = sys::msg_flags_t;
#[cfg(kamailio_5_6)]
type MsgFlags = std::os::raw::c_uint;

const FL_SIPTRACE: MsgFlags = sys::FL_SIPTRACE as MsgFlags;

/// Which message a per-process note is about: its id and the process that
/// received it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MsgKey {
    id: u32,
    pid: i32,
}

/// The request methods the module tells apart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    Other,
}

impl<'a> Msg<'a> {
    /// `None` for null and for TM's faked reply (`FAKED_REPLY`, -1).
    ///
    /// # Safety
    /// Otherwise `p` must be a message that stays valid for `'a`.
    pub(super) unsafe fn from_ptr(p: *mut sys::sip_msg) -> Option<Msg<'a>> {
        if p as isize == -1 {
            return None;
        }
        NonNull::new(p).map(|ptr| Msg { ptr, _life: PhantomData })
    }

    pub(super) fn as_ptr(self) -> *mut sys::sip_msg {
        self.ptr.as_ptr()
    }

    fn raw(&self) -> &sys::sip_msg {
        // SAFETY: valid for 'a (`from_ptr`); the reference lives only for
        // one field read.
        unsafe { self.ptr.as_ref() }
    }

    pub fn key(self) -> MsgKey {
        let m = self.raw();
        MsgKey { id: m.id, pid: m.pid }
    }

    /// The raw text of the message, as Kamailio received it.
    pub fn bytes(self) -> Option<&'a [u8]> {
        let m = self.raw();
        // SAFETY: a message's buffer holds `len` bytes while the message
        // lives, and is not changed.
        unsafe { host_bytes(m.buf, m.len) }
    }

    pub fn is_request(self) -> bool {
        self.raw().first_line.type_ == sys::SIP_REQUEST as _
    }

    /// The method of a request; `None` for a reply.
    pub fn method(self) -> Option<Method> {
        if !self.is_request() {
            return None;
        }
        // SAFETY: a request's first line holds the request variant.
        let method = unsafe { self.raw().first_line.u.request.method_value } as u32;
        Some(match method {
            sys::request_method_METHOD_INVITE => Method::Invite,
            sys::request_method_METHOD_ACK => Method::Ack,
            sys::request_method_METHOD_CANCEL => Method::Cancel,
            _ => Method::Other,
        })
    }

    /// Whether the script set flag number `flag` (`setflag()`).
    pub fn has_flag(self, flag: u8) -> bool {
        flag < 32 && self.raw().flags & (1 << flag) != 0
    }

    /// Whether the message is marked as traced (`FL_SIPTRACE`): its
    /// transaction's messages are traced by the TM callbacks.
    pub fn is_traced(self) -> bool {
        self.raw().msg_flags & FL_SIPTRACE != 0
    }

    pub fn mark_traced(self) {
        // SAFETY: valid for 'a; a single field written in place, with no
        // reference to the message held across the write.
        unsafe { (*self.ptr.as_ptr()).msg_flags |= FL_SIPTRACE };
    }

    /// Where the message came from and arrived at.
    pub fn received(self) -> Received<'a> {
        // SAFETY: valid for 'a; the core does not change `rcv` once the
        // message is received.
        Received::new(unsafe { &(*self.ptr.as_ptr()).rcv })
    }

    /// What is being sent, when this runs in onsend_route.
    pub fn onsend(self) -> Option<Onsend<'a>> {
        // SAFETY: p_onsend is null outside onsend_route, and while it runs
        // points at the send's data, which outlives the route's functions.
        unsafe { sys::p_onsend.as_ref() }.map(Onsend)
    }
}

/// The message onsend_route is about to send.
#[derive(Clone, Copy)]
pub struct Onsend<'a>(&'a sys::onsend_info);

impl<'a> Onsend<'a> {
    /// The bytes about to be sent.
    pub fn payload(self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.0.len).ok()?;
        if len == 0 {
            return Some(&[]);
        }
        // SAFETY: `buf` holds `len` bytes while onsend_route runs.
        unsafe { host_bytes(self.0.buf, len) }
    }

    /// The socket it leaves from and the peer, over that socket's transport.
    pub fn ends(self) -> Option<(Endpoint, Endpoint)> {
        // SAFETY: the onsend info's socket is null or a listen socket.
        let src = unsafe { Socket::from_ptr(self.0.send_sock) }?.local()?;
        // SAFETY: `to` is null or the peer's address, for the send.
        let to = unsafe { self.0.to.as_ref() }?;
        Some((src, Endpoint { transport: src.transport, addr: super::net::socket_addr(to)? }))
    }

    pub fn dest(self) -> Option<DestInfo<'a>> {
        // SAFETY: null or the send's destination, valid while the route runs.
        unsafe { DestInfo::from_ptr(self.0.dst) }
    }
}
