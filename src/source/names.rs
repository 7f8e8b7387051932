//! The names a tree may hold, checked where a tree is read (a Git commit or a directory).
//!
//! Git's object format lets a tree entry be named anything but `NUL`: `..`, `a/b`, `.git`, the
//! same name twice. `git fsck` refuses such trees, but a forge that does not fsck pushes accepts
//! them, and a path built from such names climbs out of whatever folder it is joined to. gitmoor
//! runs as root and writes repo folders to disk, so a commit holding one bad name is refused as a
//! whole, before any of its files is read or written.

use std::collections::HashSet;

/// Longest path accepted (bytes, `/`-separated from the root), as Linux's `PATH_MAX`: a longer
/// one cannot be written anyway, and a hostile chain of nested trees must not make gitmoor build
/// ever longer strings.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why one name cannot be part of a path, or None when it can.
pub fn name_problem(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        return Some("an empty name");
    }
    if name == b"." || name == b".." {
        return Some("`.` and `..` would leave the folder the tree is written to");
    }
    if name.eq_ignore_ascii_case(b".git") {
        return Some("`.git` (in any case) is Git's own folder; git fsck refuses it in a tree");
    }
    if name.contains(&b'/') {
        return Some("a `/` inside a name would make one entry reach into another folder");
    }
    if name.contains(&0) {
        return Some("a NUL byte inside a name");
    }
    None
}

/// A path for messages: lossy UTF-8, control characters and quotes escaped, so a name cannot
/// forge log lines or hide what it is.
pub fn shown(path: &str) -> String {
    path.escape_debug().to_string()
}

/// The names of one tree (or directory) as they are read: each is checked, and two names that
/// map to the same path string (the same name twice, or two non-UTF-8 names that differ only in
/// bytes the lossy conversion replaces) are refused.
#[derive(Default)]
pub struct TreeNames {
    seen: HashSet<String>,
}

impl TreeNames {
    /// The path of `name` inside `prefix` ("" is the root), or (that path, why it is refused).
    pub fn admit(&mut self, prefix: &str, name: &[u8]) -> Result<String, (String, &'static str)> {
        let lossy = String::from_utf8_lossy(name).into_owned();
        let path = if prefix.is_empty() {
            lossy.clone()
        } else {
            format!("{prefix}/{lossy}")
        };
        if let Some(why) = name_problem(name) {
            return Err((path, why));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err((path, "the path is longer than 4096 bytes"));
        }
        if !self.seen.insert(lossy) {
            return Err((
                path,
                "the tree holds this name twice (or two names that read the same)",
            ));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_git_fsck_refuses() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b".git",
            b".GIT",
            b".Git",
            b"a/b",
            b"../../etc",
            b"a\0b",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        for good in [
            &b"a"[..],
            b"...",
            b".gitignore",
            b".github",
            b"git",
            b"a\\b",
            b" ",
            b"\xff",
        ] {
            assert_eq!(name_problem(good), None, "{good:?}");
        }
    }

    #[test]
    fn duplicates_and_lossy_collisions_are_refused() {
        let mut t = TreeNames::default();
        assert_eq!(t.admit("compose", b"a").unwrap(), "compose/a");
        assert!(t.admit("compose", b"a").is_err());
        let mut t = TreeNames::default();
        t.admit("", b"x\xff").unwrap();
        let (path, why) = t.admit("", b"x\xfe").unwrap_err();
        assert_eq!(path, "x\u{fffd}");
        assert!(why.contains("twice"), "{why}");
    }

    #[test]
    fn long_paths_and_escaping() {
        let mut t = TreeNames::default();
        let long = "d".repeat(MAX_PATH_BYTES);
        assert!(t.admit("x", long.as_bytes()).is_err());
        assert_eq!(shown("a\nb\"c"), "a\\nb\\\"c");
    }
}
