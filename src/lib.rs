//! gitmoor keeps one Linux host in the state a Git repository describes.
//!
//! One reconcile is a pipeline, and the modules follow it:
//! source (Git) → spec (desired state) → observe (the host now) → plan (pure diff) → apply
//! (effects) → state (what was applied). `reconcile` runs it once; `daemon` runs it on a schedule.

pub mod apply;
pub mod config;
pub mod labels;
pub mod observe;
pub mod plan;
pub mod source;
pub mod spec;
