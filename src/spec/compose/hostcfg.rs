//! Container settings that map one to one onto Docker's config: `expose`, `sysctls`, `ulimits`,
//! `devices`, `group_add`, `stop_grace_period`, and the namespace modes (`network_mode`, `pid`,
//! `ipc`), where compose's `service:<name>` becomes Docker's `container:<its container name>`.

use super::ctx::{Ctx, REMOVE_IT};
use super::units::parse_duration;
use crate::spec::model::{DeviceSpec, UlimitSpec};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::{BTreeMap, BTreeSet};

/// `expose:`: `"3000"`, `3000-3005`, `"53/udp"` → `3000/tcp`, ...
pub(crate) fn expose(ctx: &mut Ctx, v: &Node, k: &str) -> Vec<String> {
    let mut out = Vec::new();
    let items = ctx.seq(v, k).unwrap_or(&[]);
    for (i, item) in items.iter().enumerate() {
        let sub = format!("{k}[{i}]");
        let Some(s) = item
            .scalar_text()
            .filter(|_| !matches!(item.value, NodeValue::Bool(_)))
        else {
            ctx.error(
                item,
                &sub,
                format!("expected a port, found {}", item.kind()),
                "",
            );
            continue;
        };
        match expose_one(&s) {
            Ok(ports) => {
                for p in ports {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
            Err(m) => ctx.error(item, &sub, m, "write it like 5432, 8000-8010 or 53/udp"),
        }
    }
    out
}

fn expose_one(s: &str) -> Result<Vec<String>, String> {
    let bad = || format!("`{s}` is not a port, a range or port/protocol");
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let num = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?),
        None => {
            let p = num(ports).ok_or_else(bad)?;
            (p, p)
        }
    };
    if hi < lo || hi - lo > 1000 {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// `sysctls:` as a mapping or a list of `name=value`.
pub(crate) fn sysctls(ctx: &mut Ctx, v: &Node, k: &str) -> BTreeMap<String, String> {
    let map = ctx.string_map(v, k);
    for (name, value) in &map {
        if name.is_empty() || value.is_empty() {
            ctx.error(
                v,
                &format!("{k}.{name}"),
                "a sysctl needs a name and a value",
                "write it like net.core.somaxconn: 1024",
            );
        }
    }
    map
}

/// `ulimits:`: `nproc: 65535` or `nofile: {soft: 20000, hard: 40000}`.
pub(crate) fn ulimits(ctx: &mut Ctx, v: &Node, k: &str) -> BTreeMap<String, UlimitSpec> {
    let mut out = BTreeMap::new();
    for (name, n) in ctx.map(v, k).unwrap_or(&[]) {
        let sub = format!("{k}.{name}");
        let limit = match &n.value {
            NodeValue::Map(fields) => {
                let (mut soft, mut hard) = (None, None);
                for (fk, fv) in fields {
                    let fsub = format!("{sub}.{fk}");
                    match fk.as_str() {
                        "soft" => soft = ctx.int(fv, &fsub),
                        "hard" => hard = ctx.int(fv, &fsub),
                        _ => ctx.unsupported(fv, &fsub),
                    }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) if soft <= hard || hard < 0 => {
                        Some(UlimitSpec { soft, hard })
                    }
                    (Some(_), Some(_)) => {
                        ctx.error(n, &sub, "soft is above hard", "lower soft, or raise hard");
                        None
                    }
                    _ => {
                        ctx.error(n, &sub, "needs soft and hard", "add soft: and hard:");
                        None
                    }
                }
            }
            _ => ctx.int(n, &sub).map(|l| UlimitSpec { soft: l, hard: l }),
        };
        if let Some(l) = limit {
            out.insert(name.clone(), l);
        }
    }
    out
}

/// `devices:`: `/dev/x`, `/dev/x:/dev/y`, `/dev/x:/dev/y:rwm`, or `{source, target, permissions}`.
pub(crate) fn devices(ctx: &mut Ctx, v: &Node, k: &str) -> Vec<DeviceSpec> {
    let mut out = Vec::new();
    let items = ctx.seq(v, k).unwrap_or(&[]);
    for (i, item) in items.iter().enumerate() {
        let sub = format!("{k}[{i}]");
        let parsed = match &item.value {
            NodeValue::Map(fields) => {
                let (mut host, mut cont, mut perms) = (None, None, None);
                for (fk, fv) in fields {
                    let fsub = format!("{sub}.{fk}");
                    match fk.as_str() {
                        "source" => host = ctx.string(fv, &fsub),
                        "target" => cont = ctx.string(fv, &fsub),
                        "permissions" => perms = ctx.string(fv, &fsub),
                        _ => ctx.unsupported(fv, &fsub),
                    }
                }
                let Some(host) = host else {
                    ctx.error(
                        item,
                        &format!("{sub}.source"),
                        "missing",
                        "add source: /dev/...",
                    );
                    continue;
                };
                let cont = cont.unwrap_or_else(|| host.clone());
                device(&host, &cont, perms.as_deref().unwrap_or("rwm"))
            }
            _ => {
                let Some(s) = ctx.string(item, &sub) else {
                    continue;
                };
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [h] => device(h, h, "rwm"),
                    [h, c] if is_perms(c) => device(h, h, c),
                    [h, c] => device(h, c, "rwm"),
                    [h, c, p] => device(h, c, p),
                    _ => Err(format!("`{s}` is not host[:container[:permissions]]")),
                }
            }
        };
        match parsed {
            Ok(d) => out.push(d),
            Err(m) => ctx.error(item, &sub, m, "write it like /dev/ttyUSB0:/dev/ttyUSB0:rwm"),
        }
    }
    out
}

fn is_perms(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

fn device(host: &str, cont: &str, perms: &str) -> Result<DeviceSpec, String> {
    if !host.starts_with('/') {
        return Err(format!(
            "`{host}`: only device paths are supported (CDI device names need a newer Docker API)"
        ));
    }
    if !cont.starts_with('/') {
        return Err(format!("`{cont}` must be an absolute path"));
    }
    if !is_perms(perms) {
        return Err(format!("`{perms}` is not a permission set (r, w, m)"));
    }
    Ok(DeviceSpec {
        host: host.to_string(),
        container: cont.to_string(),
        permissions: perms.to_string(),
    })
}

/// `group_add:`: group names or numbers.
pub(crate) fn group_add(ctx: &mut Ctx, v: &Node, k: &str) -> Vec<String> {
    ctx.strings(v, k)
}

/// `stop_grace_period: 1m30s` → whole seconds, as Docker's `StopTimeout` takes them.
pub(crate) fn grace_period(ctx: &mut Ctx, v: &Node, k: &str) -> Option<i64> {
    let s = ctx.string(v, k)?;
    match parse_duration(&s) {
        Ok(ns) => Some((ns + 999_999_999) / 1_000_000_000),
        Err(m) => {
            ctx.error(v, k, m, "");
            None
        }
    }
}

/// The namespace a mode setting names, for the implicit dependency it creates.
pub(crate) struct ModeEnv<'a> {
    pub me: &'a str,
    pub services: &'a BTreeSet<String>,
    /// Service -> the name of its container.
    pub container_names: &'a BTreeMap<String, String>,
}

/// `network_mode`, `pid`, `ipc`: the Docker mode, and the service it joins (if any): one named
/// by `service:<name>`, or whose container `container:<name>` names.
pub(crate) fn mode(
    ctx: &mut Ctx,
    env: &ModeEnv,
    v: &Node,
    k: &str,
    allowed: &[&str],
) -> Option<(String, Option<String>)> {
    let s = ctx.string(v, k)?;
    if allowed.contains(&s.as_str()) {
        return Some((s, None));
    }
    if let Some(svc) = s.strip_prefix("service:") {
        if svc == env.me {
            ctx.error(v, k, "a service cannot join itself", REMOVE_IT);
            return None;
        }
        let Some(name) = env
            .container_names
            .get(svc)
            .filter(|_| env.services.contains(svc))
        else {
            ctx.error(
                v,
                k,
                format!("unknown service `{svc}`"),
                "name a service of this compose file",
            );
            return None;
        };
        return Some((format!("container:{name}"), Some(svc.to_string())));
    }
    if let Some(c) = s.strip_prefix("container:") {
        if !c.is_empty() {
            // The container of a sibling service (its `container_name:`, or compose's
            // `<stack>-<service>-1`) is a join like `service:<name>`: the joiner must start after
            // it, and be replaced with it.
            let sibling = env
                .container_names
                .iter()
                .find(|(svc, name)| name.as_str() == c && env.services.contains(*svc))
                .map(|(svc, _)| svc);
            if sibling.is_some_and(|svc| svc == env.me) {
                ctx.error(v, k, "a service cannot join itself", REMOVE_IT);
                return None;
            }
            return Some((s.clone(), sibling.cloned()));
        }
    }
    let mut choices: Vec<&str> = allowed.to_vec();
    choices.extend(["service:<name>", "container:<name>"]);
    ctx.error(
        v,
        k,
        format!("`{s}` is not supported"),
        &format!("use {}", choices.join(", ")),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_ports() {
        assert_eq!(expose_one("5432"), Ok(vec!["5432/tcp".to_string()]));
        assert_eq!(expose_one("53/UDP"), Ok(vec!["53/udp".to_string()]));
        assert_eq!(
            expose_one("8000-8002"),
            Ok(vec![
                "8000/tcp".into(),
                "8001/tcp".into(),
                "8002/tcp".into()
            ])
        );
        for bad in ["", "x", "0", "80/icmp", "9-8", "70000"] {
            assert!(expose_one(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_forms() {
        assert_eq!(
            device("/dev/a", "/dev/b", "rw"),
            Ok(DeviceSpec {
                host: "/dev/a".into(),
                container: "/dev/b".into(),
                permissions: "rw".into()
            })
        );
        assert!(device("nvidia.com/gpu=all", "nvidia.com/gpu=all", "rwm").is_err());
        assert!(device("/dev/a", "/dev/a", "x").is_err());
    }
}
