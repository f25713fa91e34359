//! What a traced transaction or dialog needs later, its destination,
//! correlation id and trace types, as one block of shared memory:
//! callbacks run in whichever process handles the next event.
//!
//! A dialog shares one block with the transactions of its requests, and
//! any of them may end first, so the block counts its holders and is freed
//! by the last one (`host::shm::ShmRc`). Each holder (a TM callback, a
//! dialog callback, the script call that made it) releases its reference
//! exactly once.

use crate::core::counters::Counters;
use crate::core::event::TraceTypes;
use crate::kamailio::host::shm::ShmRc;
use crate::kamailio::state::State;
use crate::kamailio::tracer::ScriptTarget;

/// The block's value; the correlation id's bytes follow it.
pub struct TraceInfo {
    pub target: ScriptTarget,
    /// What the trace sends: SIP messages, log lines, REST queries.
    pub types: TraceTypes,
    /// Who started it: the script, or a trace session.
    pub origin: Origin,
    /// The shared counters, at the same address in every process.
    counters: &'static Counters,
}

/// A holder of a block.
pub type TraceRef = ShmRc<TraceInfo>;

/// Who started a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A script call (`sip_trace()`, `sip_trace_mode()`). `skipped_method`:
    /// it was made on a request of a method `trace_skip_methods` names,
    /// which an explicit call still traces, with its transaction.
    Script { skipped_method: bool },
    /// Trace session `id`, in slot `slot` of the session table. Its
    /// records go to the session's destination, whether `trace_on` is set
    /// or not.
    Session { slot: u32, id: u64 },
}

impl TraceInfo {
    /// A new block with one holder, the caller.
    pub fn alloc(
        state: &State,
        target: ScriptTarget,
        correlation: &[u8],
        types: TraceTypes,
        origin: Origin,
    ) -> Option<TraceRef> {
        let counters = &state.shared.counters;
        let info = ShmRc::new(TraceInfo { target, types, origin, counters }, correlation)?;
        Counters::add(&counters.contexts_made);
        Some(info)
    }
}

/// The correlation id the trace was started with, if it has one.
pub fn correlation(info: &TraceRef) -> Option<&[u8]> {
    let bytes = info.tail();
    (!bytes.is_empty()).then_some(bytes)
}

impl Drop for TraceInfo {
    /// The last holder is gone.
    fn drop(&mut self) {
        Counters::add(&self.counters.contexts_freed);
    }
}
