//! How much of a commit gitmoor reads, and what it says when a commit is refused for its content.
//!
//! A commit is hostile input: whoever can push decides how big its files are. gitmoor reads it
//! at every poll, so without a bound a 1 GB file costs 1 GB of RAM each minute. Two budgets, both
//! config keys: the bytes of one file, and the bytes read from one commit in one reconcile.

/// Bytes gitmoor may read from one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// One file (config key `limits.file_bytes`).
    pub max_file_bytes: u64,
    /// All files read for one reconcile, trees included (config key `limits.read_bytes`).
    pub max_read_bytes: u64,
}

/// 64 MiB: compose files, env files and nginx sites are kilobytes; a build context may carry a
/// real asset (a font, a jar, a small model), rarely more. One file is one allocation, held
/// while it is read.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
/// 128 MiB: the folders gitmoor uses plus the build contexts, and every path of the commit with
/// its bookkeeping. The reader is promised to stay under 200 MiB on a hostile commit: this plus
/// the process's own ~20 MiB and one file in flight. A build context is also packed into an
/// in-memory tar for the engine, so a reconcile that builds peaks at about twice this.
pub const DEFAULT_MAX_READ_BYTES: u64 = 128 << 20;

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_read_bytes: DEFAULT_MAX_READ_BYTES,
        }
    }
}

/// Why a commit (or a directory read as one) cannot be used. Each names the path (escaped) and
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error(
        "the tree holds an invalid path \"{path}\": {why}; the whole commit is refused and \
         nothing of it was written (git fsck reports such entries): rename or remove it and push \
         again"
    )]
    BadName { path: String, why: &'static str },

    #[error(
        "\"{path}\" is {size} bytes, over the limit of {limit} bytes for one file read from the \
         commit (config key limits.file_bytes); make it smaller, keep it out of the folders gitmoor \
         uses (compose/, nginx/, ufw/ and the build contexts), or raise limits.file_bytes"
    )]
    FileTooBig { path: String, size: u64, limit: u64 },

    #[error("{}", total_too_big(.path, *.size, *.total, *.limit))]
    TotalTooBig {
        path: String,
        size: u64,
        total: u64,
        limit: u64,
    },

    #[error("cannot read \"{path}\": {detail}")]
    Read { path: String, detail: String },
}

/// The refusal past `limits.read_bytes`, naming the folder that grew: a file read from a folder
/// gitmoor uses, or a tree that lists too many entries (in any folder: every path of the commit
/// is kept, with its bookkeeping, even where nothing is read). Telling the user to shrink
/// compose/ when the entries are in docs/ would send them to the wrong place.
fn total_too_big(path: &str, size: u64, total: u64, limit: u64) -> String {
    let folder = path.split('/').next().unwrap_or(path);
    let fix = if super::snapshot::in_used_root(path) {
        format!(
            "make {folder}/ smaller (gitmoor reads compose/, nginx/, ufw/ and the build contexts \
             whole)"
        )
    } else {
        format!(
            "the folder {folder}/ has grown: gitmoor keeps every path of the commit (not the \
             bytes of files it does not use), so remove entries from {folder}/ (a folder that \
             names one sub-folder many times lists every path under it each time)"
        )
    };
    format!(
        "reading \"{path}\" ({size} bytes) brings the bytes gitmoor holds for the commit to \
         {total}, over the limit of {limit} bytes per reconcile (config key limits.read_bytes); \
         {fix}, or raise limits.read_bytes"
    )
}

impl ContentError {
    pub(crate) fn bad_name((path, why): (String, &'static str)) -> ContentError {
        ContentError::BadName {
            path: super::names::shown(&path),
            why,
        }
    }
}

/// Bytes read so far against the limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub limits: ReadLimits,
    pub read: u64,
}

impl Budget {
    pub fn new(limits: ReadLimits) -> Budget {
        Budget { limits, read: 0 }
    }

    /// Takes `size` bytes for the file `path`, or says which limit it breaks.
    pub fn file(&mut self, path: &str, size: u64) -> Result<(), ContentError> {
        if size > self.limits.max_file_bytes {
            return Err(ContentError::FileTooBig {
                path: super::names::shown(path),
                size,
                limit: self.limits.max_file_bytes,
            });
        }
        self.take(path, size)
    }

    /// Takes `size` bytes of a tree object (or anything that is not a file of its own).
    pub fn take(&mut self, path: &str, size: u64) -> Result<(), ContentError> {
        let total = self.read.saturating_add(size);
        if total > self.limits.max_read_bytes {
            return Err(ContentError::TotalTooBig {
                path: super::names::shown(path),
                size,
                total,
                limit: self.limits.max_read_bytes,
            });
        }
        self.read = total;
        Ok(())
    }

    /// Gives back `size` bytes taken for something no longer held (a tree object once its
    /// entries are read).
    pub fn give_back(&mut self, size: u64) {
        self.read = self.read.saturating_sub(size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_name_the_file_the_limit_and_the_key() {
        let mut b = Budget::new(ReadLimits {
            max_file_bytes: 10,
            max_read_bytes: 15,
        });
        b.file("a", 10).unwrap();
        let e = b.file("big\n", 11).unwrap_err().to_string();
        assert!(
            e.contains("\"big\\n\" is 11 bytes") && e.contains("limits.file_bytes"),
            "{e}"
        );
        let e = b.file("b", 6).unwrap_err().to_string();
        assert!(
            e.contains("to 16") && e.contains("15 bytes") && e.contains("limits.read_bytes"),
            "{e}"
        );
        assert_eq!(b.read, 10, "a refused file takes nothing");
    }
}
