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
pub mod nginx;
pub mod policy;
#[cfg(test)]
mod tests_policy;
pub mod ufw;
pub mod yaml;
