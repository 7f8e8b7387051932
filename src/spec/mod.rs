//! The desired state read from a checkout: `HostSpec { stacks, .. }`.

pub mod committed;
pub mod compose;
pub mod error;
pub mod interpolate;
pub mod limits;
pub mod load;
pub mod model;
pub mod policy;
pub mod secrets;
#[cfg(test)]
mod tests_policy;
pub mod yaml;
