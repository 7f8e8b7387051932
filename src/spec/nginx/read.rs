//! `nginx/` of a commit → the sites, by name: `<site>.yaml` (or `.yml`) rendered by gitmoor,
//! `<site>.conf` installed as written. All problems are collected, as for the stacks.

use super::fields::Fields;
use super::parse::site_def;
use super::resolve::Stacks;
use super::site::{SiteKind, SiteSpec};
use super::values::{quote, DnsName};
use crate::source::snapshot::Snapshot;
use crate::spec::error::{Findings, SpecError};
use crate::spec::limits::{show_bytes, Limits};
use crate::spec::yaml;
use std::collections::BTreeMap;

/// The folder of the managed repo that holds the sites.
pub const SITES_DIR: &str = "nginx";

/// The most a site file may weigh. A rendered site is a few hundred bytes and a hand-written
/// server block a few KiB; this only keeps a mistaken commit (a log, a dump) from being parsed or
/// installed.
pub const MAX_SITE_FILE_BYTES: u64 = 256 << 10;

/// What a file of `nginx/` is, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Yaml,
    Raw,
}

/// Reads every site of the commit. The map holds the sites read without error; `Findings` has
/// the errors of the others (and of the checks between sites).
pub fn read_sites(
    snap: &Snapshot,
    stacks: &Stacks,
    limits: &Limits,
) -> (BTreeMap<String, SiteSpec>, Findings) {
    let mut findings = Findings::default();
    // Site name -> its files, with their form.
    let mut by_name: BTreeMap<String, Vec<(String, Form)>> = BTreeMap::new();
    for entry in snap.list_dir(SITES_DIR) {
        let path = format!("{SITES_DIR}/{entry}");
        if snap.get(&path).is_none() {
            findings.warnings.push(
                SpecError::new(
                    format!("{path}/"),
                    "ignored: sites are files directly in nginx/",
                )
                .fix("move the site to nginx/<site>.yaml or nginx/<site>.conf"),
            );
            continue;
        }
        // Dot files (.gitkeep, an editor's .api.yaml.swp, a site set aside as .old.yaml) are
        // ignored whatever their extension, as `ls` and Nginx's `*.conf` glob would skip them.
        if entry.starts_with('.') {
            continue;
        }
        let (stem, form) = match entry.rsplit_once('.') {
            Some((stem, "yaml" | "yml")) => (stem, Form::Yaml),
            Some((stem, "conf")) => (stem, Form::Raw),
            // Notes beside the sites.
            Some((_, "md" | "txt")) => continue,
            _ => {
                findings.warnings.push(
                    SpecError::new(
                        shown_path(&path),
                        "ignored: not a site (.yaml, .yml or .conf)",
                    )
                    .fix("rename it to <site>.yaml or <site>.conf, or move it out of nginx/"),
                );
                continue;
            }
        };
        by_name
            .entry(stem.to_string())
            .or_default()
            .push((path, form));
    }

    let mut sites = BTreeMap::new();
    // Server name -> the file that claimed it first.
    let mut claimed: BTreeMap<DnsName, String> = BTreeMap::new();
    for (name, files) in by_name {
        let [(file, form)] = files.as_slice() else {
            let list: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
            findings.errors.push(
                SpecError::new(
                    &files[0].0,
                    format!(
                        "the site {name} is given by {} files: {}",
                        files.len(),
                        list.join(", ")
                    ),
                )
                .fix("keep one: <site>.yaml for gitmoor to render, or <site>.conf written by hand"),
            );
            continue;
        };
        if !valid_site_name(&name) {
            findings.errors.push(
                SpecError::new(
                    shown_path(file),
                    format!(
                        "site name {} is not valid (lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 64)",
                        quote(&name)
                    ),
                )
                .fix(format!(
                    "rename the file, e.g. {SITES_DIR}/{}.{}",
                    suggest_site_name(&name),
                    file.rsplit('.').next().unwrap_or("yaml")
                )),
            );
            continue;
        }
        let Some(site) = read_one(snap, stacks, limits, &name, file, *form, &mut findings) else {
            continue;
        };
        if let SiteKind::Rendered(def) = &site.kind {
            let mut clash = false;
            for n in &def.server_names {
                if let Some(other) = claimed.get(n) {
                    clash = true;
                    findings.errors.push(
                        SpecError::new(file, format!("{n} is also a server name of {other}"))
                            .key("server_names")
                            .fix("one name belongs to one site: remove it from one of the files"),
                    );
                } else {
                    claimed.insert(n.clone(), file.clone());
                }
            }
            if clash {
                continue;
            }
        }
        sites.insert(name, site);
    }
    (sites, findings)
}

/// One site file; None when it has an error (pushed to `findings`).
fn read_one(
    snap: &Snapshot,
    stacks: &Stacks,
    limits: &Limits,
    name: &str,
    file: &str,
    form: Form,
    findings: &mut Findings,
) -> Option<SiteSpec> {
    let entry = snap.get(file)?;
    let refuse = |findings: &mut Findings, msg: String, fix: &str| {
        findings.errors.push(SpecError::new(file, msg).fix(fix));
    };
    if entry.symlink {
        refuse(
            findings,
            "the site file is a symlink".into(),
            "commit the file itself",
        );
        return None;
    }
    let size = entry.data.len() as u64;
    if size > MAX_SITE_FILE_BYTES {
        refuse(
            findings,
            format!(
                "the file is {}, over the limit of {} per site file",
                show_bytes(size),
                show_bytes(MAX_SITE_FILE_BYTES)
            ),
            "a site is a short file: move what is not a site out of nginx/",
        );
        return None;
    }
    let Ok(text) = std::str::from_utf8(&entry.data) else {
        refuse(findings, "not UTF-8 text".into(), "save the file as UTF-8");
        return None;
    };
    let kind = match form {
        Form::Raw => {
            if text.trim().is_empty() {
                refuse(
                    findings,
                    "the file is empty".into(),
                    "write a server { … } block, or remove the file",
                );
                return None;
            }
            if text.contains('\0') {
                refuse(
                    findings,
                    "the file holds a NUL byte".into(),
                    "save it as plain text",
                );
                return None;
            }
            SiteKind::Raw(text.to_string())
        }
        Form::Yaml => {
            let root = match yaml::parse_within(text, file, limits.expanded_yaml_bytes) {
                Ok(root) => root,
                Err(e) => {
                    findings.errors.push(e);
                    return None;
                }
            };
            let mut f = Fields::new(file);
            let def = site_def(&mut f, &root, stacks);
            findings.errors.extend(f.errors);
            SiteKind::Rendered(Box::new(def?))
        }
    };
    Some(SiteSpec {
        name: name.to_string(),
        file: file.to_string(),
        kind,
    })
}

/// A path of the commit as a message may show it before its name is checked: a newline or a
/// control character in a file name must not break the one-line-per-problem output.
fn shown_path(p: &str) -> String {
    p.chars().flat_map(char::escape_debug).collect()
}

/// `[a-z0-9][a-z0-9._-]*`, no `..`, not ending with `.`, at most 64 characters: the host
/// side's [`crate::observe::nginx::check_site_name`], one rule for both. The name is the
/// installed file's (`<name>.conf` in the managed folder), so it must be one path segment that
/// no shell, glob or Nginx `include` reads specially. Dots are allowed so that a site can be
/// named after its domain (`nginx/api.example.fr.yaml`).
pub fn valid_site_name(s: &str) -> bool {
    crate::observe::nginx::check_site_name(s).is_ok()
}

/// A valid name close to `s`, for the fix.
fn suggest_site_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '_' | '-') => c,
            _ => '-',
        })
        .take(100)
        .collect();
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    let trimmed = out
        .trim_start_matches(['.', '_', '-'])
        .trim_end_matches('.');
    if trimmed.is_empty() {
        "site".to_string()
    } else {
        trimmed.to_string()
    }
}

/// With a `policy:` in gitmoor's config, raw `nginx/<site>.conf` sites are refused unless the
/// policy says `allow_raw_nginx: true`: a raw site is nginx configuration run by a root
/// master, which reaches past everything the policy guards for stacks (an `access_log` to any
/// file with a chosen `log_format`, `root /` with `autoindex on`, `include` of any file). The
/// refused sites leave the map; each is an error naming its file and the fix.
pub fn check_policy(
    sites: &mut BTreeMap<String, SiteSpec>,
    policy: Option<&crate::spec::policy::Policy>,
) -> Findings {
    let mut findings = Findings::default();
    if policy.is_none_or(|p| p.allow_raw_nginx) {
        return findings;
    }
    sites.retain(|name, site| {
        if !matches!(site.kind, SiteKind::Raw(_)) {
            return true;
        }
        findings.errors.push(
            SpecError::new(
                shown_path(&site.file),
                "the policy refuses raw nginx sites: a .conf is installed as written, and nginx's \
                 master runs as root (a raw site can append to any file through access_log, or \
                 serve the host's files with root / and autoindex)",
            )
            .fix(format!(
                "write it as {SITES_DIR}/{name}.yaml for gitmoor to render, or, if whoever \
                 pushes to the repo may configure nginx freely, set policy: {{preset: baseline, \
                 allow_raw_nginx: true}} in gitmoor's config"
            )),
        );
        false
    });
    findings
}
