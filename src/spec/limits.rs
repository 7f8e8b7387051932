//! Budgets for what one commit may ask of the host while it is read: bytes of a compose file and
//! of its expanded YAML; services, published ports and `depends_on` edges per stack.
//!
//! gitmoor reads whatever is pushed, as root, at every poll: a commit that makes the reader use
//! gigabytes or minutes would do so again and again. Every budget is generous for a real stack
//! (the largest compose files seen in the wild stay far below each one) and is a key of the
//! `limits:` block of the config, which every refusal names, so that a host that really needs
//! more can say so.

use crate::spec::error::SpecError;
use crate::spec::yaml::{Node, NodeValue};
use serde::Deserialize;

/// The `limits:` block of the config. Every key is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes of one compose file, checked before it is parsed (default 1 MiB: a compose file is
    /// text written by hand, the largest real ones are tens of KiB).
    pub compose_file_bytes: u64,
    /// Bytes of one compose file once parsed, aliases expanded (default 16 MiB). YAML aliases
    /// (`*name`) copy their anchor at each use, so a 1 MiB file can describe gigabytes; the
    /// parser counts what it builds (each string's text plus an allocation's overhead, each
    /// node's size) and stops past this. Measured: an ordinary compose file makes about 4 bytes
    /// of tree per byte of text, so a file at the `compose_file_bytes` default needs 4 MiB and
    /// the default leaves it 4 times that for anchors; and the worst bomb found (a mapping of
    /// 20,000 keys merged into 150 services) stops with the whole process near 100 MiB, under
    /// the 200 MiB the host is promised. A file with no alias can exceed it only by being
    /// nearly all one-letter items (33 bytes of tree per byte of `[a,a,a,...]`).
    pub expanded_yaml_bytes: u64,
    /// Bytes of all compose files of one read once parsed, counted as `expanded_yaml_bytes` is
    /// (default 64 MiB). What each stack becomes is kept until the whole commit is read, so 40
    /// stacks each just under the per-file budget held 40 times it (647 MiB measured): each file
    /// gets the smaller of its own budget and what is left of this one. 64 MiB is 4 files at
    /// the per-file budget, and 16 times what 100 ordinary stacks of 10 KiB need (about 4 MiB);
    /// the converted stacks hold about as much again as their trees, so the read's peak stays
    /// near 150 MiB, under the 200 MiB the host is promised.
    pub expanded_yaml_total_bytes: u64,
    /// Stack folders under `compose/` (default 500), counted before any is read: each one's
    /// budgets are per stack, so their number bounds the whole.
    pub stacks: u64,
    /// Services of one stack, counted before any is converted (default 200).
    pub services: u64,
    /// Port bindings of one stack, `ports:` and `expose:` together, ranges counted port by
    /// port (default 1000): `1-65535:1-65535` would otherwise make 65,535 bindings.
    pub ports: u64,
    /// `depends_on` edges of one stack (default 2000), namespace joins (`network_mode:
    /// service:x`) included.
    pub depends_on: u64,
    /// Mounts of one stack, `volumes:` items of all its services (default 1000; real stacks
    /// have tens). Each bind of a repo folder is checked against the files of the commit, so
    /// their number times the commit's size is the work of a read.
    pub mounts: u64,
    /// Bytes of one file read from the commit (default 64 MiB), sized from the Git object header
    /// before it is loaded. Only files gitmoor uses count (`compose/`, `nginx/`, `ufw/`, build
    /// contexts, `env_file`s): a big file elsewhere is never read. See `source::limits`.
    pub file_bytes: u64,
    /// Bytes read from one commit in one reconcile, files and what each tree entry costs to keep
    /// together (default 128 MiB, under the 200 MiB a hostile commit may cost; a build context is
    /// also packed into a tar in memory, so a reconcile that builds peaks at about twice).
    pub read_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            compose_file_bytes: 1 << 20,
            expanded_yaml_bytes: 16 << 20,
            expanded_yaml_total_bytes: 64 << 20,
            stacks: 500,
            services: 200,
            ports: 1000,
            depends_on: 2000,
            mounts: 1000,
            file_bytes: crate::source::limits::DEFAULT_MAX_FILE_BYTES,
            read_bytes: crate::source::limits::DEFAULT_MAX_READ_BYTES,
        }
    }
}

impl Limits {
    /// A zero budget would refuse every stack: say so when the config is read.
    pub fn check(&self) -> Result<(), String> {
        for (key, v) in [
            ("compose_file_bytes", self.compose_file_bytes),
            ("expanded_yaml_bytes", self.expanded_yaml_bytes),
            ("expanded_yaml_total_bytes", self.expanded_yaml_total_bytes),
            ("stacks", self.stacks),
            ("services", self.services),
            ("ports", self.ports),
            ("depends_on", self.depends_on),
            ("mounts", self.mounts),
        ] {
            if v == 0 {
                return Err(format!(
                    "limits.{key}: must be at least 1 (leave it out for the default)"
                ));
            }
        }
        for (key, v) in [
            ("file_bytes", self.file_bytes),
            ("read_bytes", self.read_bytes),
        ] {
            if v < 4096 {
                return Err(format!(
                    "limits.{key}: {v} is too small for any compose file; use at least 4096 \
                     (leave it out for the default)"
                ));
            }
        }
        Ok(())
    }

    /// The budgets of the Git and directory readers.
    pub fn read_limits(&self) -> crate::source::limits::ReadLimits {
        crate::source::limits::ReadLimits {
            max_file_bytes: self.file_bytes,
            max_read_bytes: self.read_bytes,
        }
    }
}

/// `1048576` → `1 MiB`, `1536` → `1536 bytes`: sizes in messages, as a person reads them.
pub fn show_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The fix of every budget refusal: make the input smaller, or raise the config key.
pub fn raise(what_to_do: &str, key: &str) -> String {
    format!("{what_to_do}, or raise limits.{key} in gitmoor's config")
}

/// A compose file over `compose_file_bytes`, refused before it is parsed.
pub fn file_too_large(file: &str, size: u64, limits: &Limits) -> Option<SpecError> {
    (size > limits.compose_file_bytes).then(|| {
        SpecError::new(
            file,
            format!(
                "the file is {}, over the limit of {} per compose file (limits.compose_file_bytes)",
                show_bytes(size),
                show_bytes(limits.compose_file_bytes)
            ),
        )
        .fix(raise(
            "split it into stacks, or move data out of it",
            "compose_file_bytes",
        ))
    })
}

/// The refusal of a commit with more stack folders than `limits.stacks`, before any is read.
pub fn too_many_stacks(count: u64, limits: &Limits) -> Option<SpecError> {
    (count > limits.stacks).then(|| {
        SpecError::new(
            "compose/",
            format!(
                "{count} stack folders, over the limit of {} (limits.stacks); no stack was read",
                limits.stacks
            ),
        )
        .fix(raise("merge small stacks", "stacks"))
    })
}

/// Counts of one stack, read from the parsed file before any service is converted, so that an
/// oversized stack costs no more than its YAML tree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StackCounts {
    pub services: u64,
    pub ports: u64,
    pub depends_on: u64,
    pub mounts: u64,
}

/// What `root` (a parsed, interpolated compose file) asks for. Entries that are malformed count
/// as one (their conversion reports them).
pub fn count_stack(root: &Node) -> StackCounts {
    let mut c = StackCounts::default();
    let Some(NodeValue::Map(services)) = root.get("services").map(|s| &s.value) else {
        return c;
    };
    c.services = services.len() as u64;
    for (_, svc) in services {
        for key in ["ports", "expose"] {
            if let Some(NodeValue::Seq(items)) = svc.get(key).map(|n| &n.value) {
                for item in items {
                    c.ports = c.ports.saturating_add(bindings(item));
                }
            }
        }
        match svc.get("volumes").map(|n| &n.value) {
            Some(NodeValue::Seq(items)) => c.mounts += items.len() as u64,
            Some(NodeValue::Map(entries)) => c.mounts += entries.len() as u64,
            _ => {}
        }
        match svc.get("depends_on").map(|n| &n.value) {
            Some(NodeValue::Seq(items)) => c.depends_on += items.len() as u64,
            Some(NodeValue::Map(entries)) => c.depends_on += entries.len() as u64,
            _ => {}
        }
        for join in ["network_mode", "pid", "ipc"] {
            let joins = svc
                .get(join)
                .and_then(Node::as_str)
                .is_some_and(|v| v.starts_with("service:") || v.starts_with("container:"));
            c.depends_on += u64::from(joins);
        }
    }
    c
}

/// How many bindings one `ports:`/`expose:` item makes: the length of its container range
/// (`8000-8099:80-179` → 100), 1 for anything else.
fn bindings(item: &Node) -> u64 {
    let Some(text) = (match &item.value {
        NodeValue::Str(s) => Some(s.as_str()),
        _ => None,
    }) else {
        return 1;
    };
    let addr = text.rsplit_once('/').map_or(text, |(a, _)| a);
    // The container part is last: `[ip:][host:]container`.
    let container = addr.rsplit(':').next().unwrap_or(addr);
    match container.split_once('-') {
        Some((lo, hi)) => match (lo.trim().parse::<u64>(), hi.trim().parse::<u64>()) {
            (Ok(lo), Ok(hi)) if hi >= lo => hi - lo + 1,
            _ => 1,
        },
        None => 1,
    }
}

/// The refusals for a stack over its budgets, each at the line of `services:` (where a person
/// would start to trim).
pub fn check_stack(file: &str, root: &Node, limits: &Limits) -> Vec<SpecError> {
    let counts = count_stack(root);
    let line = root.get("services").map(|s| s.line);
    let mut out = Vec::new();
    let over = [
        (
            counts.services,
            limits.services,
            "services",
            "services",
            "split the stack into several stacks",
        ),
        (
            counts.ports,
            limits.ports,
            "ports",
            "port bindings (ports: and expose:, a range counted port by port)",
            "publish fewer ports or narrower ranges",
        ),
        (
            counts.depends_on,
            limits.depends_on,
            "depends_on",
            "depends_on edges",
            "remove dependencies that follow from others",
        ),
        (
            counts.mounts,
            limits.mounts,
            "mounts",
            "mounts (volumes: of all services)",
            "mount a parent folder once instead of many of its files",
        ),
    ];
    for (n, max, key, what, fix) in over {
        if n > max {
            out.push(
                SpecError::new(
                    file,
                    format!("{n} {what}, over the limit of {max} per stack (limits.{key})"),
                )
                .at_line(line)
                .key("services")
                .fix(raise(fix, key)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;

    #[test]
    fn defaults_and_zero_refused() {
        let l = Limits::default();
        assert_eq!(l.compose_file_bytes, 1 << 20);
        assert_eq!(l.expanded_yaml_bytes, 16 << 20);
        assert!(l.check().is_ok());
        let bad = Limits { ports: 0, ..l };
        assert!(bad.check().unwrap_err().contains("limits.ports"));
    }

    #[test]
    fn sizes_read_as_a_person_reads_them() {
        assert_eq!(show_bytes(1 << 20), "1 MiB");
        assert_eq!(show_bytes(3 << 19), "1.5 MiB");
        assert_eq!(show_bytes(2048), "2 KiB");
        assert_eq!(show_bytes(1000), "1000 bytes");
    }

    #[test]
    fn a_large_file_is_refused_naming_the_key() {
        let l = Limits::default();
        assert!(file_too_large("f", 1 << 20, &l).is_none());
        let e = file_too_large("compose/a/compose.yaml", (1 << 20) + 1, &l)
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("compose/a/compose.yaml: the file is 1.0 MiB, over the limit of 1 MiB per compose file (limits.compose_file_bytes); "),
            "{e}"
        );
        assert!(
            e.ends_with("raise limits.compose_file_bytes in gitmoor's config"),
            "{e}"
        );
    }

    #[test]
    fn counts_services_port_ranges_and_edges() {
        let root = parse(
            "services:\n  a:\n    image: x\n    ports: [\"1-65535:1-65535\", \"80\", {target: 81}, \"127.0.0.1:9000-9009:9000-9009/udp\"]\n    expose: [\"5000-5009\"]\n  b:\n    image: x\n    depends_on: [a]\n    network_mode: service:a\n  c:\n    image: x\n    depends_on: {a: {condition: service_started}, b: {}}\n",
            "f",
        )
        .unwrap();
        assert_eq!(
            count_stack(&root),
            StackCounts {
                services: 3,
                ports: 65535 + 1 + 1 + 10 + 10,
                depends_on: 4,
                mounts: 0,
            }
        );
        let errors: Vec<String> = check_stack("compose/s/compose.yaml", &root, &Limits::default())
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors, vec![
            "compose/s/compose.yaml:1: services: 65557 port bindings (ports: and expose:, a range counted port by port), over the limit of 1000 per stack (limits.ports); publish fewer ports or narrower ranges, or raise limits.ports in gitmoor's config",
        ]);
        let tight = Limits {
            services: 2,
            depends_on: 3,
            ports: 100_000,
            ..Limits::default()
        };
        let errors: Vec<String> = check_stack("f", &root, &tight)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("3 services, over the limit of 2 per stack (limits.services)"));
        assert!(errors[1]
            .contains("4 depends_on edges, over the limit of 3 per stack (limits.depends_on)"));
    }

    #[test]
    fn mounts_of_all_services_are_counted_against_their_limit() {
        let root = parse(
            "services:\n  a:\n    image: x\n    volumes: [\"./a:/a\", \"./b:/b\", {type: bind, source: ./c, target: /c}]\n  b:\n    image: x\n    volumes: [\"data:/d\"]\n",
            "f",
        )
        .unwrap();
        assert_eq!(count_stack(&root).mounts, 4);
        let tight = Limits {
            mounts: 3,
            ..Limits::default()
        };
        let errors: Vec<String> = check_stack("f", &root, &tight)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors, vec![
            "f:1: services: 4 mounts (volumes: of all services), over the limit of 3 per stack (limits.mounts); mount a parent folder once instead of many of its files, or raise limits.mounts in gitmoor's config",
        ]);
        assert!(check_stack("f", &root, &Limits::default()).is_empty());
    }
}
