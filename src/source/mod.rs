//! Where the desired state comes from: a Git remote (`git.rs`) or a directory, both read into a
//! `Snapshot`.

pub mod git;
pub mod snapshot;
