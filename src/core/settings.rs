//! The settings both bindings share: how the sender processes work, and
//! how HEP is encoded. Each binding fills them from its own parameters
//! (Kamailio's modparams, OpenSIPS's tracer and proto_hep ones); the
//! defaults are the module's, on either host.

use crate::core::hep::HepSettings;

/// How the sender processes work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Senders {
    /// Sender processes, each with its own queue.
    pub count: usize,
    /// Bytes of shared memory for each queue.
    pub queue_bytes: usize,
    /// Most records a sender handles in one burst.
    pub batch_size: usize,
    /// Milliseconds a sender with an empty queue waits before it looks again.
    pub flush_interval_ms: u64,
    /// CA certificates that TLS collectors' certificates are checked against.
    pub tls_ca_file: String,
    /// Most rows written in one transaction.
    pub db_batch_size: usize,
    /// Milliseconds a row waits, at most, for others to share its transaction.
    pub db_flush_interval_ms: u64,
}

impl Default for Senders {
    fn default() -> Self {
        Senders {
            count: 1,
            queue_bytes: 4 << 20,
            batch_size: 64,
            flush_interval_ms: 20,
            tls_ca_file: crate::core::sender::tls::SYSTEM_CA_FILE.into(),
            db_batch_size: 1000,
            db_flush_interval_ms: 200,
        }
    }
}

/// What the sender processes need from the configuration, on any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub senders: Senders,
    pub hep: HepSettings,
    /// Whether SIP sent to collectors and as copies carries the
    /// `X-Siptrace-*` headers.
    pub xheaders_write: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            senders: Senders::default(),
            hep: HepSettings { capture_id: 1, auth_key: None, version: 3, ..Default::default() },
            xheaders_write: false,
        }
    }
}
