//! The Kamailio release the module is built for, from the cfg build.rs
//! emits for the tree it reads. Policy code asks it whether a parameter or
//! function that a later release added exists on this server.

/// A release, `major.minor`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Release(pub u8, pub u8);

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The release this build loads into.
#[cfg(kamailio_6_0)]
pub const RUNNING: Release = Release(6, 0);
#[cfg(kamailio_5_6)]
pub const RUNNING: Release = Release(5, 6);

/// Whether the server is `release` or later.
pub fn at_least(release: Release) -> bool {
    RUNNING >= release
}
