//! The top-level `networks:` and `volumes:`: driver, options, IPAM, `name:` and `external:`.
//!
//! A network or volume the file declares gets compose's name (`<stack>_<key>`) and labels, unless
//! `name:` gives the Docker name. An `external: true` one is made outside gitmoor: it keeps its
//! own name, gets no labels, and is never created, changed or removed.
//!
//! `include:` is refused: a stack is the one compose file of its folder.

use super::ctx::{is_extension, user_labels, valid_object_name, Ctx};
use crate::labels;
use crate::spec::model::{IpamPool, IpamSpec, NetworkSpec, VolumeSpec};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// `include:`: refused once, at its line. The services it would bring in are then only partly
/// defined here (or not at all), and what conversion would say about them (`image: missing` for
/// a service whose image is in an included file) is a consequence: `ctx.refused_include` tells
/// the service converter to leave it out.
pub(crate) fn include(ctx: &mut Ctx, v: &Node) {
    let mut files: Vec<String> = Vec::new();
    let items: Vec<&Node> = match &v.value {
        NodeValue::Seq(items) => items.iter().collect(),
        _ => vec![v],
    };
    for item in items {
        match &item.value {
            NodeValue::Map(_) => match item.get("path").map(|p| &p.value) {
                Some(NodeValue::Seq(paths)) => {
                    files.extend(paths.iter().filter_map(|p| p.scalar_text()))
                }
                Some(_) => files.extend(item.get("path").and_then(|p| p.scalar_text())),
                None => {}
            },
            _ => files.extend(item.scalar_text()),
        }
    }
    let what = if files.is_empty() {
        "another compose file".to_string()
    } else {
        let shown: Vec<String> = files.iter().take(5).map(|f| format!("`{f}`")).collect();
        let more = if files.len() > 5 { ", ..." } else { "" };
        format!("{}{more}", shown.join(", "))
    };
    ctx.error(
        v,
        "include",
        format!("not supported (a stack is the one compose file of its folder): the services, networks and volumes of {what} are not read"),
        "put the included file's services (and the networks and volumes they use) in this compose file, or make the included project its own stack folder (compose/<name>/compose.yaml)",
    );
    ctx.refused_include = true;
}

/// The network compose makes for services that name none.
pub(crate) fn default_network(stack: &str) -> NetworkSpec {
    NetworkSpec {
        name: format!("{stack}_default"),
        labels: managed_labels(stack, labels::NETWORK, "default", BTreeMap::new()),
        ..Default::default()
    }
}

fn managed_labels(
    stack: &str,
    kind_label: &str,
    key: &str,
    user: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = user;
    labels.insert(labels::PROJECT.to_string(), stack.to_string());
    labels.insert(kind_label.to_string(), key.to_string());
    labels.insert(labels::MANAGED.to_string(), "true".to_string());
    labels
}

/// `external: true`, or compose's legacy `external: {name: x}` (which also names it).
fn external(ctx: &mut Ctx, n: &Node, key: &str, name: &mut Option<String>) -> bool {
    match &n.value {
        NodeValue::Map(entries) => {
            for (k, v) in entries {
                let sub = format!("{key}.{k}");
                match k.as_str() {
                    "name" => *name = ctx.string(v, &sub),
                    _ => ctx.unsupported(v, &sub),
                }
            }
            ctx.warn(
                n,
                key,
                "`external: {name: ...}` is deprecated",
                "write external: true and name: ... instead",
            );
            true
        }
        _ => ctx.bool(n, key).unwrap_or(false),
    }
}

/// A Docker object name given with `name:`.
fn object_name(ctx: &mut Ctx, n: &Node, key: &str) -> Option<String> {
    let name = ctx.string(n, key)?;
    if valid_object_name(&name) {
        Some(name)
    } else {
        ctx.error(
            n,
            key,
            format!("`{name}` is not a valid Docker name"),
            "use letters, digits, `_`, `.` and `-`, starting with a letter or digit",
        );
        None
    }
}

/// Keys that describe how to make the object: meaningless for an external one.
fn refuse_on_external(ctx: &mut Ctx, entries: &[(String, Node)], base: &str, allowed: &[&str]) {
    for (k, n) in entries {
        if !allowed.contains(&k.as_str()) && !is_extension(k) {
            ctx.error(
                n,
                &format!("{base}.{k}"),
                "an external object is made outside this file, so this key has no effect",
                "remove it, or remove external: true to let gitmoor make it",
            );
        }
    }
}

/// What differs between a top-level network and a top-level volume; the walk over the section
/// (key check, `name:`, `labels:`, `external:`, compose's naming and labels) is shared.
trait TopObject: Default {
    /// `networks` or `volumes`.
    const SECTION: &'static str;
    /// The compose label that carries the object's key in the file.
    const KIND_LABEL: &'static str;
    /// Reads one of the object's own keys; false when `key` is not one of them.
    fn field(&mut self, ctx: &mut Ctx, key: &str, n: &Node, path: &str) -> bool;
    /// An object made outside gitmoor, known by its Docker name only.
    fn external(name: String) -> Self;
    /// Gives a managed object its Docker name and labels.
    fn managed(self, name: String, labels: BTreeMap<String, String>) -> Self;
}

impl TopObject for NetworkSpec {
    const SECTION: &'static str = "networks";
    const KIND_LABEL: &'static str = labels::NETWORK;

    fn field(&mut self, ctx: &mut Ctx, key: &str, n: &Node, path: &str) -> bool {
        match key {
            "internal" => self.internal = ctx.bool(n, path).unwrap_or(false),
            "driver" => self.driver = ctx.string(n, path).filter(|d| !d.is_empty()),
            "driver_opts" => self.driver_opts = ctx.string_map(n, path),
            "ipam" => self.ipam = ipam(ctx, n, path),
            "attachable" => self.attachable = ctx.bool(n, path).unwrap_or(false),
            "enable_ipv6" => self.enable_ipv6 = ctx.bool(n, path).unwrap_or(false),
            "enable_ipv4" => ctx.not_yet(n, path),
            _ => return false,
        }
        true
    }

    fn external(name: String) -> Self {
        NetworkSpec {
            name,
            external: true,
            ..Default::default()
        }
    }

    fn managed(self, name: String, labels: BTreeMap<String, String>) -> Self {
        NetworkSpec {
            name,
            labels,
            ..self
        }
    }
}

impl TopObject for VolumeSpec {
    const SECTION: &'static str = "volumes";
    const KIND_LABEL: &'static str = labels::VOLUME;

    fn field(&mut self, ctx: &mut Ctx, key: &str, n: &Node, path: &str) -> bool {
        match key {
            "driver" => self.driver = ctx.string(n, path).filter(|d| !d.is_empty()),
            "driver_opts" => self.driver_opts = ctx.string_map(n, path),
            _ => return false,
        }
        true
    }

    fn external(name: String) -> Self {
        VolumeSpec {
            name,
            external: true,
            ..Default::default()
        }
    }

    fn managed(self, name: String, labels: BTreeMap<String, String>) -> Self {
        VolumeSpec {
            name,
            labels,
            ..self
        }
    }
}

pub(crate) fn top_networks(
    ctx: &mut Ctx,
    stack: &str,
    node: &Node,
) -> BTreeMap<String, NetworkSpec> {
    top_objects(ctx, stack, node)
}

pub(crate) fn top_volumes(ctx: &mut Ctx, stack: &str, node: &Node) -> BTreeMap<String, VolumeSpec> {
    top_objects(ctx, stack, node)
}

fn top_objects<T: TopObject>(ctx: &mut Ctx, stack: &str, node: &Node) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let Some(entries) = ctx.map(node, T::SECTION) else {
        return out;
    };
    // "networks" → "network": the word an error uses for one of them.
    let one = T::SECTION.trim_end_matches('s');
    for (key, v) in entries {
        let base = format!("{}.{key}", T::SECTION);
        if !valid_object_name(key) {
            ctx.error(
                v,
                &base,
                format!("not a valid {one} name"),
                "use letters, digits, `_`, `.` and `-`",
            );
        }
        let mut spec = T::default();
        let (mut name, mut user, mut is_external) = (None, BTreeMap::new(), false);
        let fields = ctx.map(v, &base).unwrap_or(&[]);
        for (k, n) in fields {
            let sub = format!("{base}.{k}");
            match k.as_str() {
                "labels" => user = user_labels(ctx, n, &sub),
                "external" => is_external = external(ctx, n, &sub, &mut name),
                "name" => name = object_name(ctx, n, &sub),
                k if is_extension(k) => {}
                k => {
                    if !spec.field(ctx, k, n, &sub) {
                        ctx.unsupported(n, &sub)
                    }
                }
            }
        }
        let spec = if is_external {
            refuse_on_external(ctx, fields, &base, &["external", "name"]);
            T::external(name.unwrap_or_else(|| key.clone()))
        } else {
            spec.managed(
                name.unwrap_or_else(|| format!("{stack}_{key}")),
                managed_labels(stack, T::KIND_LABEL, key, user),
            )
        };
        out.insert(key.clone(), spec);
    }
    out
}

fn ipam(ctx: &mut Ctx, node: &Node, key: &str) -> Option<IpamSpec> {
    let entries = ctx.map(node, key)?;
    let mut spec = IpamSpec::default();
    for (k, n) in entries {
        let sub = format!("{key}.{k}");
        match k.as_str() {
            "driver" => spec.driver = ctx.string(n, &sub).filter(|d| !d.is_empty()),
            "options" => spec.options = ctx.string_map(n, &sub),
            "config" => {
                let items = ctx.seq(n, &sub).unwrap_or(&[]);
                for (i, item) in items.iter().enumerate() {
                    let isub = format!("{sub}[{i}]");
                    if let Some(pool) = ipam_pool(ctx, item, &isub) {
                        spec.config.push(pool);
                    }
                }
            }
            k if is_extension(k) => {}
            _ => ctx.unsupported(n, &sub),
        }
    }
    Some(spec)
}

fn ipam_pool(ctx: &mut Ctx, node: &Node, key: &str) -> Option<IpamPool> {
    let entries = ctx.map(node, key)?;
    let mut pool = IpamPool::default();
    for (k, n) in entries {
        let sub = format!("{key}.{k}");
        match k.as_str() {
            "subnet" => pool.subnet = cidr(ctx, n, &sub),
            "ip_range" => pool.ip_range = cidr(ctx, n, &sub),
            "gateway" => pool.gateway = address(ctx, n, &sub),
            "aux_addresses" => ctx.not_yet(n, &sub),
            k if is_extension(k) => {}
            _ => ctx.unsupported(n, &sub),
        }
    }
    if pool.subnet.is_none() && (pool.ip_range.is_some() || pool.gateway.is_some()) {
        ctx.error(
            node,
            &format!("{key}.subnet"),
            "missing (ip_range and gateway need a subnet)",
            "add subnet: 172.28.0.0/16",
        );
        return None;
    }
    Some(pool)
}

/// `172.28.0.0/16`.
fn cidr(ctx: &mut Ctx, n: &Node, key: &str) -> Option<String> {
    let s = ctx.string(n, key)?;
    if parse_cidr(&s).is_some() {
        Some(s)
    } else {
        ctx.error(
            n,
            key,
            format!("`{s}` is not a subnet"),
            "write it like 172.28.0.0/16",
        );
        None
    }
}

pub(crate) fn address(ctx: &mut Ctx, n: &Node, key: &str) -> Option<String> {
    let s = ctx.string(n, key)?;
    if s.parse::<IpAddr>().is_ok() {
        Some(s)
    } else {
        ctx.error(
            n,
            key,
            format!("`{s}` is not an IP address"),
            "write it like 172.28.0.10",
        );
        None
    }
}

pub(crate) fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

/// Whether `addr` lies in `subnet` (same family, same leading bits).
pub(crate) fn in_subnet(addr: &str, subnet: &str) -> bool {
    let (Ok(a), Some((net, bits))) = (addr.parse::<IpAddr>(), parse_cidr(subnet)) else {
        return false;
    };
    let (a, n, width) = match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a) as u128, u32::from(n) as u128, 32u32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128u32),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    if shift >= 128 {
        return true;
    }
    (a >> shift) == (n >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        assert!(in_subnet("172.20.0.2", "172.20.0.0/24"));
        assert!(!in_subnet("172.20.1.2", "172.20.0.0/24"));
        assert!(in_subnet("10.1.2.3", "0.0.0.0/0"));
        assert!(in_subnet("fd00::5", "fd00::/64"));
        assert!(!in_subnet("fd00::5", "172.20.0.0/24"));
        assert!(parse_cidr("172.20.0.0/33").is_none());
        assert!(parse_cidr("172.20.0.0").is_none());
        assert!(parse_cidr("x/8").is_none());
    }
}
