//! The desired state read from a checkout: `HostSpec { stacks, .. }`.

pub mod error;
pub mod interpolate;
pub mod model;
pub mod secrets;
