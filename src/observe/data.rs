//! The stacks' data folders on the host (`<data_dir>/<stack>/<path>`), for the plan to say which
//! are new and which are kept after their service or stack left the repo. Directory reads only;
//! no file is opened, nothing is followed.

use super::{DataDir, DataStack, Observed, Seen};
use crate::spec::model::HostSpec;
use std::collections::BTreeSet;
use std::path::Path;

/// Fills `observed.data`. A data dir that does not exist yet is observed empty; one that cannot
/// be read is not observed, and the plan says so instead of guessing.
pub fn observe_data_folders(observed: &mut Observed, spec: &HostSpec, data_dir: &Path) {
    observed.data = match read(spec, data_dir) {
        Ok(d) => Seen::Observed(d),
        Err(e) => Seen::NotObserved(format!("cannot read {}: {e}", data_dir.display())),
    };
}

fn read(spec: &HostSpec, data_dir: &Path) -> std::io::Result<DataDir> {
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let existing = spec
        .stacks
        .values()
        .flat_map(|st| st.services.values())
        .flat_map(|svc| svc.data_folders.values())
        .filter(|host| is_dir(Path::new(host)))
        .cloned()
        .collect();
    let mut out = DataDir {
        existing,
        ..Default::default()
    };
    let rd = match std::fs::read_dir(data_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let path = e.path();
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_dir(&path) {
            continue;
        }
        out.stacks.insert(
            name,
            DataStack {
                path: path.to_string_lossy().into_owned(),
                entries: folders_in(&path)?,
            },
        );
    }
    Ok(out)
}

fn folders_in(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            if let Some(n) = e.file_name().to_str() {
                out.insert(n.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_that_cannot_be_read_is_not_observed_and_one_not_made_yet_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Observed::default();
        observe_data_folders(&mut o, &HostSpec::default(), &dir.path().join("none"));
        assert_eq!(o.data, Seen::Observed(DataDir::default()));
        // A file where the data dir should be: reading it fails.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        observe_data_folders(&mut o, &HostSpec::default(), &file);
        assert!(
            matches!(&o.data, Seen::NotObserved(why) if why.contains("cannot read")),
            "{:?}",
            o.data
        );
    }

    #[test]
    fn stack_folders_and_their_folders_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app/pgdata")).unwrap();
        std::fs::create_dir_all(dir.path().join("app/media")).unwrap();
        std::fs::write(dir.path().join("app/note"), "x").unwrap();
        let mut o = Observed::default();
        observe_data_folders(&mut o, &HostSpec::default(), dir.path());
        let d = o.data.known().expect("observed");
        assert_eq!(
            d.stacks["app"].entries.iter().collect::<Vec<_>>(),
            vec!["media", "pgdata"]
        );
    }
}
