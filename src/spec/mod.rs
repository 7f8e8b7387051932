//! The desired state read from a checkout: `HostSpec { stacks, .. }`.

pub mod committed;
pub mod compose;
pub mod error;
pub mod interpolate;
pub mod load;
pub mod model;
pub mod secrets;
pub mod yaml;
