//! The stacks' data folders on the host (`<data_dir>/<stack>/<path>`), for the plan to say which
//! are new and which are kept after their stack left the repo. Two small directory reads; no
//! file is opened, nothing is followed.

use super::Observed;
use crate::spec::model::HostSpec;
use std::path::Path;

/// Fills `observed.data_folders` (the spec's data folders that exist) and
/// `observed.data_stacks` (every stack folder of `data_dir`).
pub fn observe_data_folders(observed: &mut Observed, spec: &HostSpec, data_dir: &Path) {
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    observed.data_folders = spec
        .stacks
        .values()
        .flat_map(|st| st.services.values())
        .flat_map(|svc| svc.data_folders.values())
        .filter(|host| is_dir(Path::new(host)))
        .cloned()
        .collect();
    observed.data_stacks = std::fs::read_dir(data_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| is_dir(&e.path()))
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    Some((name, e.path().to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
}
