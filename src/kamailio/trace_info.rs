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
    /// The shared counters, at the same address in every process.
    counters: &'static Counters,
}

/// A holder of a block.
pub type TraceRef = ShmRc<TraceInfo>;

impl TraceInfo {
    /// A new block with one holder, the caller.
    pub fn alloc(
        state: &State,
        target: ScriptTarget,
        correlation: &[u8],
        types: TraceTypes,
    ) -> Option<TraceRef> {
        let counters = &state.shared.counters;
        let info = ShmRc::new(TraceInfo { target, types, counters }, correlation)?;
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
