//! The one rule for a path in gitmoor's config (`nginx:`, `firewall:`, `letsencrypt:` blocks).

use std::path::{Component, Path};

/// An absolute path without `..` (a `..` would let a harmless-looking value point elsewhere).
pub(super) fn check_path(key: &str, p: &Path) -> Result<(), String> {
    if !p.is_absolute() {
        return Err(format!(
            "{key}: {} is not an absolute path; write it from /",
            p.display()
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "{key}: {} contains `..`; write the path without it",
            p.display()
        ));
    }
    Ok(())
}
