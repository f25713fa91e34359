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

/// How a record's several HEP destinations are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distribution {
    /// Every destination gets every record (the C module's behaviour).
    #[default]
    Copy,
    /// Everything goes to the first destination that is up.
    Failover,
    /// Each call goes to one destination, by rendezvous hashing of its
    /// Call-ID.
    Shard,
}

impl Distribution {
    pub fn parse(text: &str) -> Result<Distribution, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "copy" => Ok(Distribution::Copy),
            "failover" => Ok(Distribution::Failover),
            "shard" => Ok(Distribution::Shard),
            _ => Err("expected copy, failover or shard".into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Distribution::Copy => "copy",
            Distribution::Failover => "failover",
            Distribution::Shard => "shard",
        }
    }
}

/// How destinations are chosen, watched, and what happens to records none
/// can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub distribution: Distribution,
    /// Seconds an earlier destination must have been up before failover
    /// returns to it.
    pub failover_return_s: u64,
    /// The disk spool's directory; `None`: no spool.
    pub spool_dir: Option<String>,
    /// Most bytes of the spool, all sender processes together.
    pub spool_max_bytes: u64,
    /// Most spooled records replayed per second, per sender process.
    pub spool_replay_rate: u32,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            distribution: Distribution::Copy,
            failover_return_s: 30,
            spool_dir: None,
            spool_max_bytes: 1024 << 20,
            spool_replay_rate: 1000,
        }
    }
}

/// What the sender processes need from the configuration, on any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub senders: Senders,
    pub delivery: Delivery,
    pub hep: HepSettings,
    /// Whether SIP sent to collectors and as copies carries the
    /// `X-Siptrace-*` headers.
    pub xheaders_write: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            senders: Senders::default(),
            delivery: Delivery::default(),
            hep: HepSettings { capture_id: 1, auth_key: None, version: 3, ..Default::default() },
            xheaders_write: false,
        }
    }
}
