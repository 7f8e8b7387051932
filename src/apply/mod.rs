//! Effects: each executor turns one planned action into calls on the host.

pub mod docker;
pub mod execute;
