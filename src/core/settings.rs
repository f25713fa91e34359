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

/// The delivery parameters, on either server: `hep_distribution`,
/// `failover_return`, `spool_dir`, `spool_max_size` (MiB) and
/// `spool_replay_rate`. Each binding hands its values here, so that both
/// take the same values and refuse the same ones, and names the parameter
/// and the value in its own error line.
impl Delivery {
    /// The text parameters. `Err` says why the value is refused.
    pub fn set_str(&mut self, name: &str, text: &str) -> Result<(), String> {
        match name {
            "hep_distribution" => self.distribution = Distribution::parse(text)?,
            "spool_dir" => {
                let dir = text.trim();
                if dir.is_empty() {
                    return Err("must not be empty".into());
                }
                self.spool_dir = Some(dir.to_string());
            }
            _ => return Err("not a text parameter of the delivery".into()),
        }
        Ok(())
    }

    /// The integer parameters. `Err` says why the value is refused.
    pub fn set_int(&mut self, name: &str, n: i64) -> Result<(), String> {
        let within = |min: i64, max: i64| {
            if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(format!("must be between {min} and {max}"))
            }
        };
        match name {
            "failover_return" => self.failover_return_s = within(0, 86_400)? as u64,
            "spool_max_size" => self.spool_max_bytes = within(1, 1 << 20)? as u64 * (1 << 20),
            "spool_replay_rate" => self.spool_replay_rate = within(1, 1_000_000)? as u32,
            _ => return Err("not an integer parameter of the delivery".into()),
        }
        Ok(())
    }

    /// At startup: a spool directory that cannot be created or written
    /// refuses the server, naming the parameter and the value.
    pub fn check_spool_dir(&self) -> Result<(), String> {
        let Some(dir) = &self.spool_dir else { return Ok(()) };
        crate::core::sender::spool::check_dir(std::path::Path::new(dir))
            .map_err(|e| format!("modparam 'spool_dir' has a bad value '{dir}': {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_parameters_take_their_values() {
        let mut d = Delivery::default();
        d.set_str("hep_distribution", " Shard ").unwrap();
        d.set_str("spool_dir", " /var/spool/siptrace ").unwrap();
        d.set_int("failover_return", 0).unwrap();
        d.set_int("spool_max_size", 2).unwrap();
        d.set_int("spool_replay_rate", 200).unwrap();
        assert_eq!(
            d,
            Delivery {
                distribution: Distribution::Shard,
                failover_return_s: 0,
                spool_dir: Some("/var/spool/siptrace".into()),
                spool_max_bytes: 2 << 20,
                spool_replay_rate: 200,
            }
        );
        d.set_str("hep_distribution", "failover").unwrap();
        assert_eq!(d.distribution, Distribution::Failover);
    }

    #[test]
    fn delivery_parameters_refuse_bad_values() {
        let mut d = Delivery::default();
        for (name, text, why) in [
            ("hep_distribution", "round-robin", "expected copy, failover or shard"),
            ("hep_distribution", "", "expected copy, failover or shard"),
            ("spool_dir", "  ", "must not be empty"),
        ] {
            assert_eq!(d.set_str(name, text).unwrap_err(), why, "{name}={text:?}");
        }
        for (name, n, why) in [
            ("failover_return", -1, "between 0 and 86400"),
            ("failover_return", 86_401, "between 0 and 86400"),
            ("spool_max_size", 0, "between 1 and 1048576"),
            ("spool_max_size", (1 << 20) + 1, "between 1 and 1048576"),
            ("spool_replay_rate", 0, "between 1 and 1000000"),
        ] {
            let e = d.set_int(name, n).unwrap_err();
            assert!(e.contains(why), "{name}={n}: {e}");
        }
        assert!(d.set_int("spool_dir", 1).is_err());
        assert!(d.set_str("failover_return", "1").is_err());
        assert_eq!(d, Delivery::default(), "a refused value changes nothing");
    }

    #[test]
    fn a_spool_dir_that_cannot_be_made_is_named() {
        let dir = std::env::temp_dir().join(format!("siptrace-settings-spool-{}", std::process::id()));
        let mut d = Delivery::default();
        assert_eq!(d.check_spool_dir(), Ok(()), "no spool, nothing to check");
        d.set_str("spool_dir", dir.to_str().unwrap()).unwrap();
        d.check_spool_dir().unwrap();
        assert!(dir.is_dir(), "the spool directory is made at startup");
        let _ = std::fs::remove_dir_all(&dir);
        d.set_str("spool_dir", "/proc/1/no-spool-here").unwrap();
        let e = d.check_spool_dir().unwrap_err();
        assert!(e.starts_with("modparam 'spool_dir' has a bad value '/proc/1/no-spool-here': cannot"), "{e}");
    }
}
