//! The host policy (`policy:` in the config, opt-in): what a stack may not ask of the host even
//! though Docker would grant it. A commit to the managed repo becomes root on the host as soon
//! as it can run a privileged container, join the host's namespaces, mount the Docker socket or
//! `/etc`, add `SYS_ADMIN`, or pass a device; the policy refuses those at validate and plan
//! time, with the file, line and key, so a pushed commit cannot.
//!
//! There is one preset, `baseline`; its allow-lists open exactly what a host needs (a data
//! folder, a capability, a USB stick). docs/policy.md says what it covers and what it does not.

use crate::spec::error::SpecError;
use crate::spec::model::{ServiceSpec, VolumeSpec};
use crate::spec::yaml::{Node, NodeValue};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The presets `policy:` may name.
pub const PRESETS: &[&str] = &["baseline"];

/// Capabilities Docker gives every container: adding one again changes nothing, so the policy
/// lets a hardened file (`cap_drop: [ALL]`, then `cap_add: [CHOWN, SETUID]`) through.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Host paths a bind mount may not be, hold, or lie under, unless `allow_bind` names them
/// explicitly (see `bind_refusal`), with why. `/` is only refused as itself.
const PROTECTED: &[(&str, &str)] = &[
    ("/", "the host's root"),
    (
        "/etc",
        "the host's configuration (users, sudoers, cron, gitmoor's config)",
    ),
    ("/root", "root's home (ssh keys)"),
    ("/proc", "the host's processes and kernel settings"),
    ("/sys", "the host's kernel and devices"),
    ("/dev", "the host's devices"),
    ("/boot", "the host's kernel and boot loader"),
    (
        "/var/run/docker.sock",
        "the Docker socket, which is root on the host",
    ),
    (
        "/run/docker.sock",
        "the Docker socket, which is root on the host",
    ),
    (
        "/var/lib/docker",
        "Docker's own data (every container's files)",
    ),
];

/// `policy:` of the config: `baseline`, or `{preset: baseline, allow_bind: [...], ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Host folders (and files) bind mounts may use, with what lies under them: absolute,
    /// without `..`.
    pub allow_bind: Vec<String>,
    /// Capabilities beyond Docker's default set that `cap_add` may add (`NET_ADMIN`), written
    /// without `CAP_`.
    pub allow_cap_add: Vec<String>,
    /// Host devices `devices:` may pass (`/dev/ttyUSB0`).
    pub allow_devices: Vec<String>,
    /// Raw `nginx/<site>.conf` sites, installed as written: nginx's master runs as root and
    /// reads a site's directives with root's rights (an `access_log` with a crafted
    /// `log_format` appends chosen lines to any file, `root /` serves the filesystem), so a
    /// policy refuses them unless this says the repo's writers may configure nginx freely.
    pub allow_raw_nginx: bool,
}

impl Policy {
    /// A preset by name (`gitmoor validate --policy baseline`).
    pub fn preset(name: &str) -> Result<Policy, String> {
        if PRESETS.contains(&name) {
            Ok(Policy::default())
        } else {
            Err(format!(
                "unknown policy preset `{name}` (known: {})",
                PRESETS.join(", ")
            ))
        }
    }

    /// Cleans and checks the allow-lists, so a refusal never depends on how a path was written.
    fn normalized(mut self) -> Result<Policy, String> {
        for (key, list) in [
            ("allow_bind", &mut self.allow_bind),
            ("allow_devices", &mut self.allow_devices),
        ] {
            for p in list.iter_mut() {
                *p = clean_path(p).ok_or_else(|| {
                    format!("policy.{key}: `{p}` must be an absolute path without `..`")
                })?;
            }
        }
        for c in self.allow_cap_add.iter_mut() {
            let n = cap_name(c);
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return Err(format!(
                    "policy.allow_cap_add: `{c}` is not a capability name (e.g. NET_ADMIN)"
                ));
            }
            *c = n;
        }
        Ok(self)
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PolicyVisitor)
    }
}

struct PolicyVisitor;

impl<'de> Visitor<'de> for PolicyVisitor {
    type Value = Policy;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a preset name (baseline) or {preset: baseline, allow_bind: [...], allow_cap_add: [...], allow_devices: [...], allow_raw_nginx: false}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Policy, E> {
        Policy::preset(v).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Policy, A::Error> {
        let mut preset: Option<String> = None;
        let mut policy = Policy::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "preset" => preset = Some(map.next_value()?),
                "allow_bind" => policy.allow_bind = map.next_value()?,
                "allow_cap_add" => policy.allow_cap_add = map.next_value()?,
                "allow_devices" => policy.allow_devices = map.next_value()?,
                "allow_raw_nginx" => policy.allow_raw_nginx = map.next_value()?,
                other => {
                    return Err(de::Error::custom(format!(
                        "policy: unknown key `{other}` (preset, allow_bind, allow_cap_add, allow_devices, allow_raw_nginx)"
                    )))
                }
            }
        }
        let Some(preset) = preset else {
            return Err(de::Error::custom(
                "policy: missing preset (write preset: baseline)",
            ));
        };
        Policy::preset(&preset).map_err(de::Error::custom)?;
        policy.normalized().map_err(de::Error::custom)
    }
}

/// Where one stack's binds are judged. Relative binds (repo copies and data folders) are never
/// judged: the spec reader made their host paths; an absolute bind into gitmoor's state or
/// secrets dir is refused like any protected path (a stack could otherwise name another's copy).
pub struct PolicyEnv<'a> {
    pub stack: &'a str,
    pub bind_root: &'a Path,
    pub secrets_dir: Option<&'a Path>,
    /// What `~` in a bind source is: the policy judges `~/.ssh` as the host path it names.
    pub home_dir: Option<&'a Path>,
}

/// Every refusal of the policy for one stack. `root` is the interpolated file (for lines and the
/// mounts as written), `services` and `volumes` what they were converted into.
pub fn check_stack(
    file: &str,
    policy: &Policy,
    env: &PolicyEnv,
    root: &Node,
    services: &BTreeMap<String, ServiceSpec>,
    volumes: &BTreeMap<String, VolumeSpec>,
) -> Vec<SpecError> {
    let mut out = Vec::new();
    let services_node = root.get("services");
    for (name, svc) in services {
        let node = services_node.and_then(|s| s.get(name));
        let mut refuse = |field: &str, at: Option<&Node>, message: String, fix: &str| {
            out.push(
                SpecError::new(file, message)
                    .at_line(at.or(node).map(|n| n.line))
                    .key(format!("services.{name}.{field}"))
                    .fix(fix),
            );
        };
        let field = |f: &str| node.and_then(|n| n.get(f));
        if svc.privileged {
            refuse(
                "privileged",
                field("privileged"),
                "the policy refuses privileged containers: a privileged container has every capability and every host device".into(),
                "remove it; add only the capabilities the service needs with cap_add (allowed in policy.allow_cap_add)",
            );
        }
        for (f, value, what, fix) in [
            (
                "network_mode",
                &svc.network_mode,
                "network stack",
                "remove it, and publish the ports the service serves with ports:",
            ),
            ("pid", &svc.pid, "processes", "remove it"),
            ("ipc", &svc.ipc, "shared memory", "remove it"),
        ] {
            if value.as_deref() == Some("host") {
                refuse(
                    f,
                    field(f),
                    format!("the policy refuses `{f}: host`: the container would share the host's {what}"),
                    fix,
                );
            }
        }
        for (i, cap) in svc.cap_add.iter().enumerate() {
            let n = cap_name(cap);
            if DOCKER_DEFAULT_CAPS.contains(&n.as_str()) || policy.allow_cap_add.contains(&n) {
                continue;
            }
            refuse(
                &format!("cap_add[{i}]"),
                item(field("cap_add"), i),
                format!("the policy refuses adding capability {n} (not in Docker's default set, not in policy.allow_cap_add)"),
                &format!("remove it, or add {n} to policy.allow_cap_add in gitmoor's config"),
            );
        }
        for (i, dev) in svc.devices.iter().enumerate() {
            let host = clean_path(&dev.host).unwrap_or_else(|| dev.host.clone());
            if policy.allow_devices.contains(&host) {
                continue;
            }
            refuse(
                &format!("devices[{i}]"),
                item(field("devices"), i),
                format!("the policy refuses passing the host device `{}`", dev.host),
                &format!("remove it, or add {host} to policy.allow_devices in gitmoor's config"),
            );
        }
        for (i, opt) in svc.security_opt.iter().enumerate() {
            if let Some(what) = unconfined(opt) {
                refuse(
                    &format!("security_opt[{i}]"),
                    item(field("security_opt"), i),
                    format!("the policy refuses `{opt}`: it turns off {what}"),
                    "remove it",
                );
            }
        }
        if let Some(NodeValue::Seq(items)) = field("volumes").map(|v| &v.value) {
            for (i, it) in items.iter().enumerate() {
                let Some(source) = host_bind_source(it, env.home_dir) else {
                    continue;
                };
                if let Some((message, fix)) = bind_refusal(&source, policy, env) {
                    refuse(&format!("volumes[{i}]"), Some(it), message, &fix);
                }
            }
        }
    }
    for (key, vol) in volumes {
        let opts_node = root
            .get("volumes")
            .and_then(|v| v.get(key))
            .and_then(|v| v.get("driver_opts"));
        if let Some((opt, message, fix)) = local_mount_refusal(vol) {
            out.push(
                SpecError::new(file, message)
                    .at_line(
                        opts_node
                            .and_then(|n| n.get(opt))
                            .or(opts_node)
                            .map(|n| n.line),
                    )
                    .key(format!("volumes.{key}.driver_opts.{opt}"))
                    .fix(fix),
            );
            continue;
        }
        let Some(device) = bind_device(vol) else {
            continue;
        };
        if let Some((message, fix)) = bind_refusal(device, policy, env) {
            let at = root
                .get("volumes")
                .and_then(|v| v.get(key))
                .and_then(|v| v.get("driver_opts"));
            out.push(
                SpecError::new(file, message)
                    .at_line(at.map(|n| n.line))
                    .key(format!("volumes.{key}.driver_opts.device"))
                    .fix(fix),
            );
        }
    }
    out
}

/// The `i`th item of a list node, for its line.
fn item(list: Option<&Node>, i: usize) -> Option<&Node> {
    match list.map(|l| &l.value) {
        Some(NodeValue::Seq(items)) => items.get(i).or(list),
        _ => list,
    }
}

/// `CAP_net_admin ` → `NET_ADMIN`: the form Docker accepts either way.
fn cap_name(cap: &str) -> String {
    let up = cap.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").map_or(up.clone(), str::to_string)
}

/// What a `security_opt` entry turns off, when it turns off a confinement.
fn unconfined(opt: &str) -> Option<&'static str> {
    let norm = opt.trim().to_ascii_lowercase().replace(':', "=");
    match norm.as_str() {
        "seccomp=unconfined" => Some("the seccomp filter on system calls"),
        "apparmor=unconfined" => Some("the AppArmor profile"),
        "label=disable" => Some("SELinux labelling"),
        "systempaths=unconfined" => Some("the masking of /proc and /sys paths"),
        _ => None,
    }
}

/// The host path of a `volumes:` item that is a bind of an absolute host path (as the mount
/// reader takes it: short form `/src:/dst[:mode]`, long form `type: bind` with `source: /src`).
/// Relative binds (`./conf`) are folders of the repo: None.
fn host_bind_source(item: &Node, home: Option<&Path>) -> Option<String> {
    let source = match &item.value {
        NodeValue::Str(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [source, _] | [source, _, _] => source.to_string(),
                _ => return None,
            }
        }
        NodeValue::Map(_) => {
            if item.get("type").and_then(Node::as_str) != Some("bind") {
                return None;
            }
            item.get("source")?.scalar_text()?
        }
        _ => return None,
    };
    // `~/x` as the reader expands it (compose/mounts.rs); `clean_path` resolves a `..` in it
    // as the reader does.
    let home_rest = crate::home::under_home(&source);
    if let (Some(rest), Some(home)) = (home_rest, home.filter(|h| h.is_absolute())) {
        let home = home.to_string_lossy();
        if rest.is_empty() {
            return Some(home.into_owned());
        }
        return Some(format!("{}/{rest}", home.trim_end_matches('/')));
    }
    source.starts_with('/').then_some(source)
}

/// The host folder of a named volume that is a bind in disguise (the local driver's
/// `o: bind` with `device: /path`).
fn bind_device(vol: &VolumeSpec) -> Option<&str> {
    if vol.driver.as_deref().is_some_and(|d| d != "local") {
        return None;
    }
    let binds = vol
        .driver_opts
        .get("o")
        .is_some_and(|o| o.split(',').any(|x| matches!(x.trim(), "bind" | "rbind")));
    binds.then(|| vol.driver_opts.get("device").map(String::as_str))?
}

/// Filesystem types the local volume driver may mount under a policy: none of them takes a host
/// path. `tmpfs` is memory; `nfs`, `nfs4` and `cifs` mount a share of another machine (their
/// `device` is `host:/export`, `:/export` or `//server/share`), which the container could reach
/// over the network anyway. Every other type is refused: `overlay` takes host folders in its
/// options (`lowerdir=/` mounts the host's root), `ext4`, `xfs` and the like a host block
/// device, `proc`, `sysfs` and `devtmpfs` the host's own views (dockerd mounts them in the
/// host's namespaces).
pub const LOCAL_DRIVER_TYPES: &[&str] = &["tmpfs", "nfs", "nfs4", "cifs"];

/// Why the policy refuses a named volume of the local driver that mounts something of the host
/// other than a bind (binds are judged by `bind_refusal` against `allow_bind`): a `type:`
/// outside [`LOCAL_DRIVER_TYPES`], an `o:` option whose value is a host path
/// (`lowerdir=/`, `credentials=/root/x`), or a `device:` that is a host path (a block device).
/// Returns the option key, the message and the fix.
fn local_mount_refusal(vol: &VolumeSpec) -> Option<(&'static str, String, String)> {
    if vol.driver.as_deref().is_some_and(|d| d != "local") || vol.driver_opts.is_empty() {
        return None;
    }
    let opts = &vol.driver_opts;
    let o = opts.get("o").map_or("", String::as_str);
    if o.split(',').any(|x| matches!(x.trim(), "bind" | "rbind")) {
        return None;
    }
    let fix = || {
        format!(
            "use a volume of type {} or a bind of a folder listed in policy.allow_bind",
            LOCAL_DRIVER_TYPES.join(", ")
        )
    };
    if let Some(ty) = opts.get("type") {
        let t = ty.trim().to_ascii_lowercase();
        if !LOCAL_DRIVER_TYPES.contains(&t.as_str()) {
            return Some((
                "type",
                format!(
                    "the policy refuses the local driver's filesystem type `{ty}`: only {} are allowed (others mount host paths, block devices or the host's own /proc and /sys)",
                    LOCAL_DRIVER_TYPES.join(", ")
                ),
                fix(),
            ));
        }
    }
    for opt in o.split(',') {
        let Some((k, v)) = opt.split_once('=') else {
            continue;
        };
        if v.trim().starts_with('/') {
            return Some((
                "o",
                format!(
                    "the policy refuses the mount option `{}={}`: it names a host path",
                    k.trim(),
                    v.trim()
                ),
                fix(),
            ));
        }
    }
    let device = opts.get("device").map_or("", |d| d.trim());
    if device.starts_with('/') && !device.starts_with("//") {
        return Some((
            "device",
            format!("the policy refuses the device `{device}`: it is a host path (a block device or a folder)"),
            fix(),
        ));
    }
    None
}

/// Why the policy refuses binding `source` (an absolute host path), with the fix; None when it
/// may. A source is allowed when `allow_bind` has it or a folder above it, and it neither is,
/// holds nor lies under a protected path, unless an `allow_bind` entry names that protected
/// ground explicitly: an entry at or under the protected path that covers the source (allow
/// `/etc/localtime` to bind `/etc/localtime`), or the source itself (allow `/run` to bind
/// `/run`, which holds the Docker socket). So allowing `/var` does not allow `/var/lib/docker`.
fn bind_refusal(source: &str, policy: &Policy, env: &PolicyEnv) -> Option<(String, String)> {
    let Some(s) = clean_path(source) else {
        return Some((
            format!("the policy refuses the bind `{source}`: a host path with `..`"),
            "write the path without `..`".into(),
        ));
    };
    let mut protected: Vec<(String, &str)> = PROTECTED
        .iter()
        .map(|(p, why)| (p.to_string(), *why))
        .collect();
    if let Some(state) = env.bind_root.parent().filter(|p| p != &Path::new("/")) {
        protected.extend(
            clean_path(&state.to_string_lossy()).map(|p| (p, "gitmoor's state (its clone, state)")),
        );
    }
    if let Some(secrets) = env.secrets_dir {
        protected
            .extend(clean_path(&secrets.to_string_lossy()).map(|p| (p, "gitmoor's secrets dir")));
    }
    let covering: Vec<&String> = policy.allow_bind.iter().filter(|a| under(&s, a)).collect();
    for (p, why) in &protected {
        let conflict = if p == "/" {
            s == "/"
        } else {
            under(&s, p) || under(p, &s)
        };
        if !conflict {
            continue;
        }
        let explicit = covering.iter().any(|a| under(a, p) || **a == s);
        if !explicit {
            let how = if s == *p {
                "is".to_string()
            } else if under(&s, p) {
                format!("lies under {p},")
            } else {
                format!("holds {p},")
            };
            return Some((
                format!("the policy refuses the bind `{source}`: it {how} {why}"),
                format!("mount something narrower, or name {s} itself in policy.allow_bind in gitmoor's config if the service really needs it"),
            ));
        }
    }
    if covering.is_empty() {
        return Some((
            format!("the policy refuses the bind `{source}`: a host path outside policy.allow_bind"),
            format!("mount a folder of the repo (./path) or a named volume, or add {s} to policy.allow_bind in gitmoor's config"),
        ));
    }
    None
}

/// `path` is `dir` or lies under it (both clean and absolute).
fn under(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `/a/./b//c/` → `/a/b/c`; `..` goes up (as the engine cleans a bind source), never above `/`.
/// None for a relative path.
pub fn clean_path(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> PolicyEnv<'static> {
        PolicyEnv {
            stack: "app",
            bind_root: Path::new("/var/lib/gitmoor/stacks"),
            secrets_dir: Some(Path::new("/etc/gitmoor/secrets")),
            home_dir: None,
        }
    }

    fn allow(paths: &[&str]) -> Policy {
        Policy {
            allow_bind: paths.iter().map(|p| p.to_string()).collect(),
            ..Policy::default()
        }
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path("/a/./b//c/").as_deref(), Some("/a/b/c"));
        assert_eq!(clean_path("/a/../../etc").as_deref(), Some("/etc"));
        assert_eq!(clean_path("/").as_deref(), Some("/"));
        assert_eq!(clean_path("a/b"), None);
        assert!(under("/etc/ssl", "/etc"));
        assert!(!under("/etcetera", "/etc"));
        assert!(under("/x", "/"));
    }

    #[test]
    fn binds_outside_the_allow_list_and_protected_paths_are_refused() {
        let cases: &[(&[&str], &str, Option<&str>)] = &[
            (&[], "/srv/data", Some("outside policy.allow_bind")),
            (&["/srv"], "/srv/data", None),
            (&["/srv/data"], "/srv/data/../data/x", None),
            (
                &["/srv"],
                "/srv/../etc",
                Some("it is the host's configuration"),
            ),
            (&[], "/var/run/docker.sock", Some("the Docker socket")),
            (&["/var"], "/var/run/docker.sock", Some("the Docker socket")),
            (&["/var"], "/var/run", Some("holds /var/run/docker.sock")),
            (
                &["/var"],
                "/var/lib/docker/volumes",
                Some("lies under /var/lib/docker"),
            ),
            (&["/var"], "/var/log", None),
            (&["/var/run/docker.sock"], "/var/run/docker.sock", None),
            (&["/run"], "/run", None),
            (&["/run"], "/run/docker.sock", Some("the Docker socket")),
            (&[], "/", Some("the host's root")),
            (&["/"], "/home", None),
            (&["/"], "/etc", Some("is the host's configuration")),
            (&["/"], "/", None),
            (&["/etc/localtime"], "/etc/localtime", None),
            (&["/etc"], "/etc/ssl/certs", None),
            (&[], "/root/.ssh", Some("lies under /root")),
            (&["/proc"], "/proc", None),
            (&[], "/sys/fs/cgroup", Some("lies under /sys")),
            (&[], "/dev/sda", Some("lies under /dev")),
            (&[], "/boot", Some("is the host's kernel")),
            (
                &["/var/lib"],
                "/var/lib/gitmoor",
                Some("is gitmoor's state"),
            ),
            (
                &["/etc"],
                "/etc/gitmoor/secrets/app.env",
                Some("gitmoor's secrets dir"),
            ),
            // An absolute bind into gitmoor's state, even where this stack's copies are.
            (
                &[],
                "/var/lib/gitmoor/stacks/app/conf",
                Some("lies under /var/lib/gitmoor"),
            ),
            (
                &[],
                "/var/lib/gitmoor/stacks/other/conf",
                Some("lies under /var/lib/gitmoor"),
            ),
        ];
        for (allowed, source, want) in cases {
            let got = bind_refusal(source, &allow(allowed), &env());
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some((m, fix))) => {
                    assert!(m.contains(w), "{allowed:?} {source}: {m}");
                    assert!(fix.contains("policy.allow_bind"), "{fix}");
                }
                _ => panic!("{allowed:?} {source}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn config_forms_parse_and_are_checked() {
        let p: Policy = serde_saphyr::from_str("baseline").unwrap();
        assert_eq!(p, Policy::default());
        let p: Policy = serde_saphyr::from_str(
            "preset: baseline\nallow_bind: [/srv/data/, /srv/../opt]\nallow_cap_add: [cap_net_admin]\nallow_devices: [/dev/ttyUSB0]\n",
        )
        .unwrap();
        assert_eq!(p.allow_bind, vec!["/srv/data", "/opt"]);
        assert_eq!(p.allow_cap_add, vec!["NET_ADMIN"]);
        assert_eq!(p.allow_devices, vec!["/dev/ttyUSB0"]);
        assert!(!p.allow_raw_nginx);
        let p: Policy =
            serde_saphyr::from_str("preset: baseline\nallow_raw_nginx: true\n").unwrap();
        assert!(p.allow_raw_nginx);
        for (bad, want) in [
            ("strict", "unknown policy preset `strict`"),
            ("allow_bind: [/srv]", "missing preset"),
            (
                "preset: baseline\nallow_bind: [srv]",
                "must be an absolute path",
            ),
            (
                "preset: baseline\nallow_cap_add: [\"net admin\"]",
                "not a capability name",
            ),
            ("preset: baseline\nallow: [x]", "unknown key `allow`"),
        ] {
            let e = serde_saphyr::from_str::<Policy>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn capability_names_and_confinement_options() {
        assert_eq!(cap_name(" cap_sys_admin"), "SYS_ADMIN");
        assert_eq!(cap_name("NET_ADMIN"), "NET_ADMIN");
        assert!(unconfined("seccomp:unconfined").is_some());
        assert!(unconfined("apparmor=unconfined").is_some());
        assert!(unconfined("label:disable").is_some());
        assert!(unconfined("no-new-privileges:true").is_none());
        assert!(unconfined("seccomp=/etc/docker/seccomp.json").is_none());
    }

    /// The local driver mounts what its options say, in the host's namespaces: `overlay` with
    /// `lowerdir=/` is the host's root, `ext4` on `/dev/sda1` its disk. Only `o: bind` was
    /// refused before; now every type outside the allow-list, every option naming a host path
    /// and every device that is a host path are, at their key, and tmpfs, NFS and CIFS pass.
    #[test]
    fn local_driver_options_that_mount_the_host_are_refused() {
        use crate::source::snapshot::Snapshot;
        use crate::spec::load::{load_host_spec, LoadOptions};
        let text = r#"services:
  app:
    image: x
    volumes: [root:/r, blk:/b, creds:/c, dev:/d, mem:/m, nfs:/n, share:/s, disguised:/e]
volumes:
  root:
    driver_opts: {type: overlay, o: "lowerdir=/,upperdir=/tmp/u,workdir=/tmp/w"}
  blk:
    driver: local
    driver_opts: {type: ext4, device: /dev/sda1}
  creds:
    driver_opts: {type: cifs, device: //srv/share, o: "addr=10.0.0.3,credentials=/root/.smb"}
  dev:
    driver_opts:
      device: /dev/sdb
  mem:
    driver_opts: {type: tmpfs, device: tmpfs, o: "size=100m,uid=1000"}
  nfs:
    driver_opts: {type: nfs4, device: ":/export", o: "addr=10.0.0.2,rw"}
  share:
    driver_opts: {type: CIFS, device: //srv/share, o: "addr=10.0.0.3,username=u"}
  disguised:
    driver_opts: {type: none, o: bind, device: /etc}
"#;
        let snap = Snapshot::from_texts(&[("compose/app/compose.yaml", text)]);
        let (spec, f) = load_host_spec(&snap, &LoadOptions::default());
        assert!(spec.is_some(), "no policy, no refusal: {:#?}", f.errors);
        let opts = LoadOptions {
            policy: Some(Policy::preset("baseline").unwrap()),
            ..LoadOptions::default()
        };
        let (spec, f) = load_host_spec(&snap, &opts);
        assert!(spec.is_none());
        let errors: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        let fix = "use a volume of type tmpfs, nfs, nfs4, cifs or a bind of a folder listed in policy.allow_bind";
        let want = [
            format!("compose/app/compose.yaml:10: volumes.blk.driver_opts.type: the policy refuses the local driver's filesystem type `ext4`: only tmpfs, nfs, nfs4, cifs are allowed (others mount host paths, block devices or the host's own /proc and /sys); {fix}"),
            format!("compose/app/compose.yaml:12: volumes.creds.driver_opts.o: the policy refuses the mount option `credentials=/root/.smb`: it names a host path; {fix}"),
            format!("compose/app/compose.yaml:15: volumes.dev.driver_opts.device: the policy refuses the device `/dev/sdb`: it is a host path (a block device or a folder); {fix}"),
            "compose/app/compose.yaml:23: volumes.disguised.driver_opts.device: the policy refuses the bind `/etc`".to_string(),
            format!("compose/app/compose.yaml:7: volumes.root.driver_opts.type: the policy refuses the local driver's filesystem type `overlay`: only tmpfs, nfs, nfs4, cifs are allowed (others mount host paths, block devices or the host's own /proc and /sys); {fix}"),
        ];
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        for w in &want {
            assert!(
                errors.iter().any(|e| e.starts_with(w.as_str())),
                "want {w}\nin {errors:#?}"
            );
        }
    }
}
