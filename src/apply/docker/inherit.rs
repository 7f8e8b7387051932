//! Anonymous volumes carried over a recreate, as docker compose does: a service whose data sits
//! in an anonymous volume (`volumes: ["/data"]`, or an image's own `VOLUME`, as PostgreSQL's
//! `/var/lib/postgresql/data` when the file declares none) keeps that volume in the new
//! container. Without it the new container gets a fresh, empty one: the database looks lost,
//! its data stranded in a volume nothing mounts.

use crate::spec::model::{MountSpec, ServiceSpec};
use bollard::models::{ContainerCreateBody, Mount, MountPoint, MountType};

/// A volume of the old container to mount again in the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherited {
    pub volume: String,
    pub target: String,
    pub read_only: bool,
}

/// The old container's anonymous volumes (a 64-hex name the engine made) at a path the new spec
/// does not give a named volume, a bind or a tmpfs: those paths keep their data. A named volume
/// is never carried (the spec names its volumes).
pub fn inherited(old: &[MountPoint], spec: &ServiceSpec) -> Vec<Inherited> {
    let claimed = |target: &str| {
        spec.tmpfs.contains_key(target)
            || spec.volumes.iter().any(|m| match m {
                MountSpec::Volume {
                    source, target: t, ..
                } => t == target && !source.is_empty(),
                MountSpec::Bind { target: t, .. } => t == target,
            })
    };
    old.iter()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| {
            let volume = m.name.as_deref().filter(|n| is_anonymous(n))?;
            let target = m.destination.as_deref()?;
            (!claimed(target)).then(|| Inherited {
                volume: volume.to_string(),
                target: target.to_string(),
                read_only: m.rw == Some(false),
            })
        })
        .collect()
}

/// The names the engine gives anonymous volumes: 64 lowercase hex digits.
fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Mounts each inherited volume at its path in the create body, in place of the spec's own
/// anonymous volume there (a new, empty one).
pub fn apply(body: &mut ContainerCreateBody, inherited: &[Inherited]) {
    if inherited.is_empty() {
        return;
    }
    let host = body.host_config.get_or_insert_with(Default::default);
    let mounts = host.mounts.get_or_insert_with(Vec::new);
    for i in inherited {
        mounts.retain(|m| m.target.as_deref() != Some(i.target.as_str()));
        mounts.push(Mount {
            typ: Some(MountType::VOLUME),
            source: Some(i.volume.clone()),
            target: Some(i.target.clone()),
            read_only: i.read_only.then_some(true),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANON: &str = "3f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn point(name: &str, dest: &str, rw: bool) -> MountPoint {
        MountPoint {
            typ: Some("volume".into()),
            name: Some(name.into()),
            destination: Some(dest.into()),
            rw: Some(rw),
            ..Default::default()
        }
    }

    #[test]
    fn anonymous_volumes_are_carried_unless_the_spec_claims_the_path() {
        let mut spec = ServiceSpec::default();
        spec.volumes.push(MountSpec::Volume {
            source: String::new(),
            target: "/data".into(),
            read_only: false,
        });
        spec.volumes.push(MountSpec::Volume {
            source: "app_pgdata".into(),
            target: "/named".into(),
            read_only: false,
        });
        spec.tmpfs.insert("/tmp".into(), String::new());
        let old = vec![
            point(ANON, "/data", true),
            // An image VOLUME the file never mentions (PostgreSQL's data folder).
            point(&ANON.replace('3', "4"), "/var/lib/postgresql/data", false),
            point(&ANON.replace('3', "5"), "/named", true),
            point(&ANON.replace('3', "6"), "/tmp", true),
            point("app_other", "/other", true),
            MountPoint {
                typ: Some("bind".into()),
                source: Some("/srv/x".into()),
                destination: Some("/x".into()),
                ..Default::default()
            },
        ];
        let got = inherited(&old, &spec);
        assert_eq!(
            got,
            vec![
                Inherited {
                    volume: ANON.into(),
                    target: "/data".into(),
                    read_only: false
                },
                Inherited {
                    volume: ANON.replace('3', "4"),
                    target: "/var/lib/postgresql/data".into(),
                    read_only: true
                },
            ]
        );

        let mut body = ContainerCreateBody {
            host_config: Some(bollard::models::HostConfig {
                mounts: Some(vec![Mount {
                    typ: Some(MountType::VOLUME),
                    target: Some("/data".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        apply(&mut body, &got);
        let mounts = body.host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts.len(), 2);
        assert!(mounts
            .iter()
            .any(|m| m.target.as_deref() == Some("/data") && m.source.as_deref() == Some(ANON)));
    }
}
