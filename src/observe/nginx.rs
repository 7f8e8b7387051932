//! The folder of vhosts gitmoor owns (`nginx.sites_dir`), as it is: which sites gitmoor wrote
//! there and what each holds. A file gitmoor did not write (no header line) is foreign: it is
//! listed so the plan can say so, and never read as a site to change or remove.

use super::Seen;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

/// The first line of every file gitmoor writes in the sites folder: how it tells its own files
/// from the admin's. A renderer may add words after it on the same line
/// (`# managed by gitmoor from nginx/api.yaml`).
pub const MANAGED_HEADER: &str = "# managed by gitmoor";

/// The end of the name of gitmoor's temporary files in the sites folder
/// (`.api.conf.gitmoor-tmp`): not `*.conf`, so Nginx's include never reads one half written.
pub const TMP_SUFFIX: &str = ".gitmoor-tmp";

/// A site file bigger than this is not one gitmoor wrote (its vhosts are a few KiB): it is
/// listed as foreign rather than read into memory.
pub const MAX_SITE_BYTES: u64 = 1 << 20;

/// The sites folder: gitmoor's sites by name (`api` for `api.conf`) with their content, and the
/// names of the other entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SitesDir {
    pub managed: BTreeMap<String, String>,
    /// File names (`hand-written.conf`, `notes.txt`, a folder) gitmoor leaves alone.
    pub foreign: BTreeSet<String>,
}

/// True when `content` starts with gitmoor's header line.
pub fn is_managed(content: &str) -> bool {
    let first = content.lines().next().unwrap_or("");
    first
        .strip_prefix(MANAGED_HEADER)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', ':', ',', '\t']))
}

/// The text gitmoor writes for a site: `content` when it already starts with the header line,
/// else the header line and `content`. The differ compares an observed site with
/// `with_header(desired)`, so a renderer may add the header or leave it to the host side.
pub fn with_header(content: &str) -> String {
    if is_managed(content) {
        content.to_string()
    } else {
        format!("{MANAGED_HEADER}\n{content}")
    }
}

/// A site name as it becomes a file name: `[a-z0-9][a-z0-9._-]*`, no `..`, not ending with
/// `.`, at most 64 bytes. Checked again here, where it becomes a path, whatever the reader
/// already checked; the reader uses this same function, so the two rules cannot drift.
pub fn check_site_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok_first || !ok_chars || name.contains("..") || name.ends_with('.') || name.len() > 64 {
        return Err(format!(
            "{name:?} is not a site name: use lowercase letters, digits, '.', '_' and '-', \
             starting with a letter or digit, without `..`, not ending with `.`, at most 64 \
             characters"
        ));
    }
    Ok(())
}

/// The sites gitmoor wrote in `dir`, by name. A folder that does not exist yet is observed
/// empty (nothing installed); one that cannot be read is not observed, so the plan never takes
/// "could not look" for "no sites" and removes them.
pub fn observe_sites(dir: &Path) -> Seen<BTreeMap<String, String>> {
    match read_sites_dir(dir) {
        Ok(d) => Seen::Observed(d.managed),
        Err(why) => Seen::NotObserved(why),
    }
}

/// [`observe_sites`] with the foreign entries too.
pub fn read_sites_dir(dir: &Path) -> Result<SitesDir, String> {
    let cannot =
        |e: std::io::Error| format!("cannot read the nginx sites folder {}: {e}", dir.display());
    let mut out = SitesDir::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(cannot(e)),
    };
    for entry in entries {
        let entry = entry.map_err(cannot)?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        // gitmoor's own temporary files (`.api.conf.gitmoor-tmp`) are neither sites nor foreign.
        if file_name.starts_with('.') && file_name.ends_with(TMP_SUFFIX) {
            continue;
        }
        match read_site(&entry.path(), &file_name).map_err(cannot)? {
            Some((site, content)) => {
                out.managed.insert(site, content);
            }
            None => {
                out.foreign.insert(file_name);
            }
        }
    }
    Ok(out)
}

/// `Some((site, content))` for a regular `<site>.conf` file that starts with the header; `None`
/// for anything else (a symlink is never followed: it is foreign).
fn read_site(path: &Path, file_name: &str) -> std::io::Result<Option<(String, String)>> {
    let Some(site) = file_name.strip_suffix(".conf") else {
        return Ok(None);
    };
    if check_site_name(site).is_err() {
        return Ok(None);
    }
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() || meta.len() > MAX_SITE_BYTES {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SITE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    match String::from_utf8(bytes) {
        Ok(content) if is_managed(&content) => Ok(Some((site.to_string(), content))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_empty_and_an_unreadable_one_is_not_observed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            observe_sites(&dir.path().join("none")),
            Seen::Observed(BTreeMap::new())
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(
            matches!(observe_sites(&file), Seen::NotObserved(why) if why.contains("cannot read the nginx sites folder")),
        );
    }

    #[test]
    fn only_gitmoors_conf_files_are_sites_the_rest_is_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("api.conf"), "# managed by gitmoor\nserver {}\n").unwrap();
        std::fs::write(d.join("web.conf"), "# managed by gitmoor: nginx/web.yaml\n").unwrap();
        std::fs::write(d.join("hand.conf"), "server {}\n").unwrap();
        std::fs::write(d.join("later.conf"), "server {}\n# managed by gitmoor\n").unwrap();
        std::fs::write(d.join("notes.txt"), "# managed by gitmoor\n").unwrap();
        std::fs::write(d.join("Upper.conf"), "# managed by gitmoor\n").unwrap();
        std::fs::write(d.join("lookalike.conf"), "# managed by gitmoorish\n").unwrap();
        std::fs::write(d.join(".api.conf.gitmoor-tmp"), "# managed by gitmoor\n").unwrap();
        std::os::unix::fs::symlink(d.join("api.conf"), d.join("link.conf")).unwrap();
        std::fs::create_dir(d.join("sub.conf")).unwrap();
        let seen = read_sites_dir(d).unwrap();
        assert_eq!(seen.managed.keys().collect::<Vec<_>>(), vec!["api", "web"]);
        assert_eq!(seen.managed["api"], "# managed by gitmoor\nserver {}\n");
        assert_eq!(
            seen.foreign.iter().collect::<Vec<_>>(),
            vec![
                "Upper.conf",
                "hand.conf",
                "later.conf",
                "link.conf",
                "lookalike.conf",
                "notes.txt",
                "sub.conf"
            ]
        );
    }

    #[test]
    fn the_header_is_added_once() {
        assert_eq!(
            with_header("server {}\n"),
            "# managed by gitmoor\nserver {}\n"
        );
        let once = with_header("server {}\n");
        assert_eq!(with_header(&once), once);
        assert!(is_managed("# managed by gitmoor"));
        assert!(!is_managed(""));
    }

    #[test]
    fn site_names_are_plain_file_names() {
        for ok in ["api", "api.example.fr", "a-b_c", "0"] {
            assert!(check_site_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "..", "a..b", "../x", "a/b", "-x", ".hidden", "Api", "a b", "a;b", "é", "api.",
        ] {
            assert!(check_site_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_site_name(&"a".repeat(65)).is_err());
    }
}
