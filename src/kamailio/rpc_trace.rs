//! RPC command tracing (`trace_rpc`): every command Kamailio runs, over
//! any transport, gives a request and a reply record (HEP type 0x57, with
//! OpenSIPS's MI trace fields; see `core::rpc_command`). The host's RPC
//! interposition (`host::rpc_interpose`) sees each command run; here its
//! records are made.

use crate::core::endpoint::{Endpoint, Transport};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::kamailio::host::rpc_interpose::{self, CommandRun, MAX_COMMANDS};
use crate::kamailio::state::{self, State};
use crate::kamailio::tracer;
use std::net::{IpAddr, Ipv4Addr};

/// Patches every command the filter traces. Called in the main process
/// after all modules' mod_init and before the first fork, so that every
/// process inherits the patched table.
pub fn install(state: &State) -> Result<(), String> {
    let filter = &state.config.trace_rpc_filter;
    let Some(installed) = rpc_interpose::install(&|name| filter.traces(name), traced)? else { return Ok(()) };
    crate::log_info!(
        "RPC tracing: {} command(s) traced, {} left out by trace_rpc_filter{}{}",
        installed.traced,
        installed.filtered,
        if installed.read_only.is_empty() {
            String::new()
        } else {
            format!(
                ", {} not traced (read-only entry): {}",
                installed.read_only.len(),
                installed.read_only.join(", ")
            )
        },
        if installed.beyond == 0 {
            String::new()
        } else {
            format!(", {} not traced (more than {MAX_COMMANDS})", installed.beyond)
        },
    );
    Ok(())
}

/// The stand-in end of a command that did not come over the network.
fn local_end() -> Endpoint {
    Endpoint::new(Transport::Tcp, IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

/// Queues the request and reply records of a command that returned.
fn traced(run: &CommandRun<'_>) {
    let Some(state) = state::get() else { return };
    let (peer, local) = run.ends.unwrap_or((local_end(), local_end()));
    let now = Timestamp::now();
    // Shared by the command's two records.
    let correlation = crate::core::event::new_correlation_id("rpc");
    let request = run.execution.request_payload(run.name, run.backend);
    let reply = run.execution.reply_payload();
    let outputs = tracer::event_outputs(state);
    let record = TraceRecord {
        time: now,
        direction: Direction::In,
        src: peer,
        dst: local,
        payload: request.as_bytes(),
        correlation_id: Some(correlation.as_bytes()),
        extra_correlation: None,
        proto_type: proto_type::RPC,
        traced_users: None,
    };
    tracer::enqueue(state, &record, &outputs);
    let record =
        TraceRecord { direction: Direction::Out, src: local, dst: peer, payload: reply.as_bytes(), ..record };
    tracer::enqueue(state, &record, &outputs);
}
