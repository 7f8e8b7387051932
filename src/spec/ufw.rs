//! The firewall kind's reader: `ufw/rules.yaml` (or `.yml`) of the managed repo, the default
//! policies and the rules gitmoor keeps in UFW (docs/firewall.md describes the format).
//!
//! Only what belongs to the repo is read here. Whether gitmoor owns the whole firewall, the
//! Docker guard and the SSH lockout override are settings of the host (gitmoor's config): a repo
//! pushed by anyone with write access must not be able to switch off the guards.

mod model;
mod read;
#[cfg(test)]
mod tests;
mod values;

pub use model::{
    describe, Action, Addr, Defaults, Direction, FirewallRule, FirewallSpec, Net, Policy, Ports,
    Proto,
};
pub use read::{load_firewall, FIREWALL_FILES, MAX_FILE_BYTES, MAX_RULES};
pub use values::{address, MAX_COMMENT_CHARS, SERVICES};
