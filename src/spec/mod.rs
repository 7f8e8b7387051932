//! The desired state read from a checkout: `HostSpec { stacks, .. }`.

pub mod committed;
pub mod compose;
pub mod dotenv;
pub mod error;
pub mod host_secrets;
pub mod interpolate;
pub mod limits;
pub mod load;
pub mod model;
pub mod policy;
/// The old name of `host_secrets`, kept only for `status/build.rs` and `server/hooks.rs` (edited
/// elsewhere at the moment); remove it once they import `spec::host_secrets`.
pub use host_secrets as secrets;
#[cfg(test)]
mod tests_policy;
pub mod yaml;
