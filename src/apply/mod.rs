//! Effects: each executor turns one planned action into calls on the host.

pub mod certbot;
pub mod content;
pub mod dns_preflight;
pub mod docker;
pub mod execute;
mod firewall;
pub mod nginx;
mod recreate;
mod site;
pub use site::renew_last_good;
mod stack;
pub mod ufw;
