//! Where the desired state comes from: a Git remote (`git.rs`) or a directory (`dir.rs`), both
//! read into a `Snapshot`, every name checked (`names.rs`) and every byte counted (`limits.rs`)
//! as it is read; `write.rs` puts a folder of it on disk without ever leaving that folder.

pub mod dir;
pub mod git;
pub mod git_tree;
mod known_hosts;
pub mod limits;
pub mod names;
pub mod snapshot;
mod write;
