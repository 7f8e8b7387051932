//! Where the desired state comes from: a Git remote (`git.rs`, and the files its doc names) or a
//! directory (`dir.rs`), both read into a `Snapshot`, every name checked (`names.rs`) and every
//! byte counted (`limits.rs`) as it is read; `write.rs` puts a folder of it on disk without ever
//! leaving that folder.

mod credentials;
pub mod dir;
mod fetch_callbacks;
pub mod git;
mod git_error;
pub mod git_tree;
mod host_key;
mod https;
mod known_hosts;
mod libgit2_setup;
pub mod limits;
pub mod names;
pub mod remote_url;
pub mod snapshot;
mod write;
