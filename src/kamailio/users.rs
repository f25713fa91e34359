//! `traced_user_avp`: the users a trace belongs to. Every value of the AVP,
//! when the message is traced, gives the row its own copy with that value in
//! `traced_user`, and makes the message traced even while `trace_on` is off.
//! That is how an operator traces a few users only.

use crate::core::record::pack_traced_user;
use crate::kamailio::host::avp::AvpValue;
use crate::kamailio::state::State;

/// What the rows of a trace get, and whether to trace at all.
pub enum Users {
    /// Tracing is off and no user asks for it.
    Skip,
    /// One row, with an empty `traced_user`.
    Default,
    /// The packed list of `traced_user` values, one row each.
    List(Vec<u8>),
}

/// The users of a message traced now, from the AVPs of the message or
/// transaction being processed.
pub fn current(state: &State) -> Users {
    let on = state.tracing_on();
    let Some(avp) = state.traced_user_avp.get() else {
        return if on { Users::Default } else { Users::Skip };
    };
    let mut packed = Vec::new();
    if on {
        pack_traced_user(&mut packed, b"");
    }
    let mut users = 0;
    avp.for_each_value(|value| {
        match value {
            AvpValue::Str(bytes) => pack_traced_user(&mut packed, bytes),
            AvpValue::Int(n) => pack_traced_user(&mut packed, n.to_string().as_bytes()),
        }
        users += 1;
        true
    });
    match (on, users) {
        (false, 0) => Users::Skip,
        (true, 0) => Users::Default,
        _ => Users::List(packed),
    }
}
