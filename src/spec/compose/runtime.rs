//! The runtime settings of a service: healthcheck, restart policy (also from
//! `deploy.restart_policy`), resource limits (memory, CPUs and processes, also from
//! `deploy.resources.limits`), logging and extra hosts.

use super::ctx::{Ctx, REMOVE_IT};
use super::units::{cpus_to_nano, parse_bytes, parse_duration};
use crate::spec::model::{HealthcheckSpec, LoggingSpec};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::BTreeMap;

/// `deploy.resources.limits` next to `mem_limit`/`cpus`: equal values are fine, as in compose.
pub(crate) fn merge_limit(
    ctx: &mut Ctx,
    base: &str,
    what: &str,
    field: &mut Option<i64>,
    deploy: Option<(i64, &Node)>,
) {
    if let Some((d, at)) = deploy {
        match field {
            Some(f) if *f != d => ctx.error(
                at,
                &format!("{base}.deploy.resources.limits.{what}"),
                "differs from the service-level limit",
                "keep one of them",
            ),
            _ => *field = Some(d),
        }
    }
}

pub(crate) fn one_container(ctx: &mut Ctx, v: &Node, k: &str) {
    ctx.error(v, k, "not supported (one container per service)", REMOVE_IT);
}

pub(crate) fn healthcheck(ctx: &mut Ctx, v: &Node, k: &str) -> Option<HealthcheckSpec> {
    let entries = ctx.map(v, k)?;
    let mut hc = HealthcheckSpec {
        test: Vec::new(),
        interval_ns: None,
        timeout_ns: None,
        retries: None,
        start_period_ns: None,
    };
    let mut disable = false;
    for (key, n) in entries {
        let sub = format!("{k}.{key}");
        match key.as_str() {
            "test" => match &n.value {
                NodeValue::Str(s) => hc.test = vec!["CMD-SHELL".into(), s.clone()],
                NodeValue::Seq(_) => {
                    let test = ctx.strings(n, &sub);
                    match test.first().map(String::as_str) {
                        Some("CMD") | Some("CMD-SHELL") | Some("NONE") => hc.test = test,
                        _ => ctx.error(
                            n,
                            &sub,
                            "a test list must start with CMD, CMD-SHELL or NONE",
                            "write [\"CMD\", \"curl\", \"-f\", \"http://localhost/\"] or a string",
                        ),
                    }
                }
                _ => ctx.error(
                    n,
                    &sub,
                    format!("expected a string or a list, found {}", n.kind()),
                    "",
                ),
            },
            "interval" => hc.interval_ns = duration(ctx, n, &sub),
            "timeout" => hc.timeout_ns = duration(ctx, n, &sub),
            "start_period" => hc.start_period_ns = duration(ctx, n, &sub),
            "retries" => hc.retries = ctx.int(n, &sub),
            "disable" => disable = ctx.bool(n, &sub).unwrap_or(false),
            "start_interval" => ctx.not_yet(n, &sub),
            key if key.starts_with("x-") => {}
            _ => ctx.unsupported(n, &sub),
        }
    }
    // Without `test:` the image's own check runs with the timings given here: compose sends an
    // empty test, which the engine fills in from the image (a `disable: true` turns it off).
    if disable {
        hc.test = vec!["NONE".into()];
    }
    Some(hc)
}

fn duration(ctx: &mut Ctx, n: &Node, k: &str) -> Option<i64> {
    let s = ctx.string(n, k)?;
    match parse_duration(&s) {
        Ok(ns) => Some(ns),
        Err(m) => {
            ctx.error(n, k, m, "");
            None
        }
    }
}

pub(crate) fn bytes(ctx: &mut Ctx, n: &Node, k: &str) -> Option<i64> {
    if let NodeValue::Int(i) = n.value {
        if i > 0 {
            return Some(i);
        }
    }
    let s = ctx.string(n, k)?;
    match parse_bytes(&s) {
        Ok(b) if b > 0 => Some(b),
        Ok(_) => {
            ctx.error(n, k, "must be more than 0", "");
            None
        }
        Err(m) => {
            ctx.error(n, k, m, "");
            None
        }
    }
}

pub(crate) fn cpus(ctx: &mut Ctx, n: &Node, k: &str) -> Option<i64> {
    let x = match &n.value {
        NodeValue::Int(i) => *i as f64,
        NodeValue::Float(f) => *f,
        NodeValue::Str(s) => match s.trim().parse::<f64>() {
            Ok(f) => f,
            Err(_) => {
                ctx.error(
                    n,
                    k,
                    format!("`{s}` is not a number of CPUs"),
                    "write e.g. 0.5",
                );
                return None;
            }
        },
        _ => {
            ctx.error(n, k, format!("expected a number, found {}", n.kind()), "");
            return None;
        }
    };
    match cpus_to_nano(x) {
        Ok(v) => Some(v),
        Err(m) => {
            ctx.error(n, k, m, "");
            None
        }
    }
}

pub(crate) fn restart(ctx: &mut Ctx, v: &Node, k: &str) -> Option<String> {
    // `restart: no` unquoted is the string "no" in YAML 1.2; `false` is taken to mean the same.
    let s = match v.value {
        NodeValue::Bool(false) => "no".to_string(),
        _ => ctx.string(v, k)?,
    };
    let ok = match s.as_str() {
        "no" | "always" | "on-failure" | "unless-stopped" => true,
        other => other
            .strip_prefix("on-failure:")
            .is_some_and(|n| n.parse::<u32>().is_ok()),
    };
    if ok {
        Some(s)
    } else {
        ctx.error(
            v,
            k,
            format!("unknown restart policy `{s}`"),
            "use no, always, on-failure[:N] or unless-stopped",
        );
        None
    }
}

pub(crate) fn extra_hosts(ctx: &mut Ctx, v: &Node, k: &str) -> Vec<String> {
    let mut out = Vec::new();
    match &v.value {
        NodeValue::Map(entries) => {
            for (host, ip) in entries {
                if let Some(ip) = ctx.string(ip, &format!("{k}.{host}")) {
                    out.push(format!("{host}:{ip}"));
                }
            }
        }
        _ => {
            let items = ctx.seq(v, k).unwrap_or(&[]);
            for (i, item) in items.iter().enumerate() {
                let sub = format!("{k}[{i}]");
                let Some(s) = ctx.string(item, &sub) else {
                    continue;
                };
                // compose accepts `host=ip` and `host:ip`; Docker wants `host:ip`.
                let pair = s.split_once('=').or_else(|| s.split_once(':'));
                match pair {
                    Some((h, ip)) if !h.is_empty() && !ip.is_empty() => {
                        out.push(format!("{h}:{ip}"))
                    }
                    _ => ctx.error(
                        item,
                        &sub,
                        format!("`{s}` is not host:ip"),
                        "write it like \"db.local:10.0.0.5\"",
                    ),
                }
            }
        }
    }
    out
}

pub(crate) fn logging(ctx: &mut Ctx, v: &Node, k: &str) -> Option<LoggingSpec> {
    let entries = ctx.map(v, k)?;
    let mut spec = LoggingSpec {
        driver: None,
        options: BTreeMap::new(),
    };
    for (key, n) in entries {
        let sub = format!("{k}.{key}");
        match key.as_str() {
            "driver" => spec.driver = ctx.string(n, &sub),
            "options" => spec.options = ctx.string_map(n, &sub),
            _ => ctx.unsupported(n, &sub),
        }
    }
    Some(spec)
}

/// `pids_limit:`: a number of processes, or -1 (and 0, as compose reads it) for no limit.
pub(crate) fn pids_limit(ctx: &mut Ctx, n: &Node, k: &str) -> Option<i64> {
    match ctx.int(n, k)? {
        0 => None,
        p if p >= -1 => Some(p),
        p => {
            ctx.error(
                n,
                k,
                format!("`{p}` is not a process count"),
                "write a positive number, or -1 for no limit",
            );
            None
        }
    }
}

/// What `deploy:` gives a single container: the limits of `deploy.resources.limits`, each with
/// the node it came from (for an error when it differs from the service-level key), and the
/// restart policy of `deploy.restart_policy`.
#[derive(Default)]
pub(crate) struct DeployKeys<'n> {
    pub memory: Option<(i64, &'n Node)>,
    pub cpus: Option<(i64, &'n Node)>,
    pub pids: Option<(i64, &'n Node)>,
    /// As `restart:` writes it (`on-failure:3`), with the `restart_policy` node.
    pub restart: Option<(String, &'n Node)>,
}

/// `deploy:`: `resources.limits.{memory,cpus,pids}`, which become the container's limits, and
/// `restart_policy`, which becomes its restart policy (both as docker compose v2 applies them to
/// a container); the rest is Swarm's.
pub(crate) fn deploy<'n>(ctx: &mut Ctx, v: &'n Node, k: &str, out: &mut DeployKeys<'n>) {
    let Some(entries) = ctx.map(v, k) else { return };
    for (key, n) in entries {
        let sub = format!("{k}.{key}");
        match key.as_str() {
            "resources" => {
                let Some(res) = ctx.map(n, &sub) else {
                    continue;
                };
                for (rk, rn) in res {
                    let rsub = format!("{sub}.{rk}");
                    if rk != "limits" {
                        ctx.not_yet(rn, &rsub);
                        continue;
                    }
                    let Some(limits) = ctx.map(rn, &rsub) else {
                        continue;
                    };
                    for (lk, ln) in limits {
                        let lsub = format!("{rsub}.{lk}");
                        match lk.as_str() {
                            "memory" => out.memory = bytes(ctx, ln, &lsub).map(|b| (b, ln)),
                            "cpus" => out.cpus = cpus(ctx, ln, &lsub).map(|c| (c, ln)),
                            // compose takes only a positive count here (0 and -1: no limit,
                            // which is the default).
                            "pids" => {
                                out.pids = pids_limit(ctx, ln, &lsub)
                                    .filter(|p| *p > 0)
                                    .map(|p| (p, ln))
                            }
                            _ => ctx.not_yet(ln, &lsub),
                        }
                    }
                }
            }
            "restart_policy" => out.restart = restart_policy(ctx, n, &sub).map(|r| (r, n)),
            key if key.starts_with("x-") => {}
            _ => one_container(ctx, n, &sub),
        }
    }
}

/// `deploy.restart_policy` as docker compose v2 gives it to a container (`getRestartPolicy` and
/// `mapRestartPolicyCondition` in docker/compose pkg/compose/create.go): the condition mapped
/// to the engine's name (`none` -> `no`, `any` -> `always`), `max_attempts` as the retry count.
/// `delay` and `window` are Swarm's: compose drops them, and a warning says so. Written the way
/// `restart:` writes it, so both forms of one policy hash alike.
fn restart_policy(ctx: &mut Ctx, v: &Node, k: &str) -> Option<String> {
    let entries = ctx.map(v, k)?;
    let mut condition: Option<(String, &Node)> = None;
    let mut attempts: Option<(i64, &Node)> = None;
    let mut ok = true;
    for (key, n) in entries {
        let sub = format!("{k}.{key}");
        match key.as_str() {
            "condition" => match ctx.string(n, &sub) {
                Some(c) => condition = Some((c, n)),
                None => ok = false,
            },
            "max_attempts" => match ctx.int(n, &sub) {
                Some(a) if a >= 0 => attempts = Some((a, n)),
                Some(a) => {
                    ctx.error(
                        n,
                        &sub,
                        format!("`{a}` is not a number of attempts"),
                        "write 0 or more (0: no limit)",
                    );
                    ok = false;
                }
                None => ok = false,
            },
            "delay" | "window" => {
                if duration(ctx, n, &sub).is_some() {
                    ctx.warn(
                        n,
                        &sub,
                        "ignored: a Swarm setting that docker compose does not give a container (the engine spaces restarts itself)",
                        REMOVE_IT,
                    );
                }
            }
            key if key.starts_with("x-") => {}
            _ => {
                ctx.unsupported(n, &sub);
                ok = false;
            }
        }
    }
    let name = match &condition {
        Some((c, n)) => match c.as_str() {
            "none" | "no" => "no",
            "on-failure" => "on-failure",
            "any" | "always" => "always",
            "unless-stopped" => "unless-stopped",
            other => {
                ctx.error(
                    n,
                    &format!("{k}.condition"),
                    format!("unknown condition `{other}`"),
                    "use none, on-failure or any",
                );
                return None;
            }
        },
        None => {
            // compose sends an empty policy name, which the engine reads as `no` (Swarm's
            // default, `any`, is not applied).
            ctx.warn(
                v,
                k,
                "no condition: docker compose gives the container no restart policy (Swarm's default, any, does not apply here)",
                "add condition: any, on-failure or none",
            );
            "no"
        }
    };
    if !ok {
        return None;
    }
    match attempts {
        Some((a, _)) if name == "on-failure" && a > 0 => Some(format!("on-failure:{a}")),
        // The engine takes a retry count only with on-failure (a create with `always` and a
        // count fails), and 0 is no count.
        Some((a, n)) if a > 0 && condition.is_some() => {
            ctx.error(
                n,
                &format!("{k}.max_attempts"),
                format!("applies only with condition: on-failure, not `{name}` (the engine refuses a retry count with it)"),
                "remove max_attempts, or write condition: on-failure",
            );
            None
        }
        _ => Some(name.to_string()),
    }
}

/// `restart:` and `deploy.restart_policy` both given: compose applies the deploy one. Equal
/// policies are fine; different ones get a warning, as one of them is surely a slip.
pub(crate) fn merge_restart(
    ctx: &mut Ctx,
    base: &str,
    restart: &mut Option<String>,
    deploy: Option<(String, &Node)>,
) {
    let Some((d, at)) = deploy else { return };
    if let Some(r) = restart.as_deref().filter(|r| *r != d) {
        ctx.warn(
            at,
            &format!("{base}.deploy.restart_policy"),
            format!("gives `{d}`, restart: gives `{r}`; docker compose applies deploy.restart_policy, and so does gitmoor"),
            "keep one of them",
        );
    }
    *restart = Some(d);
}
