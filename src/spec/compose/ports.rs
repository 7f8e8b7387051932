//! `ports:` in compose's short (`"127.0.0.1:3000:3000/tcp"`) and long (`target:`, `published:`)
//! forms.

use super::ctx::Ctx;
use crate::spec::model::PortSpec;
use crate::spec::yaml::{Node, NodeValue};

pub(crate) fn ports(ctx: &mut Ctx, node: &Node, key: &str) -> Vec<PortSpec> {
    let Some(items) = ctx.seq(node, key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let parsed = match &item.value {
            NodeValue::Map(entries) => long_port(ctx, entries, &k),
            NodeValue::Int(_) | NodeValue::Str(_) => {
                let text = item.scalar_text().unwrap_or_default();
                short_port(&text).map_err(|m| (m, String::new()))
            }
            _ => Err((
                format!(
                    "expected a port like \"3000:3000\" or a mapping, found {}",
                    item.kind()
                ),
                String::new(),
            )),
        };
        match parsed {
            Ok(ps) => out.extend(ps),
            Err((msg, sub)) => ctx.error(item, &format!("{k}{sub}"), msg, ""),
        }
    }
    out
}

/// `[host_ip:][host_port:]container_port[/protocol]`, ports possibly ranges of the same length.
pub(crate) fn short_port(spec: &str) -> Result<Vec<PortSpec>, String> {
    let bad = |why: &str| {
        format!(
            "`{spec}`: {why}; write it like \"3000\", \"127.0.0.1:3000:3000\" or \"8080:80/udp\""
        )
    };
    let (addr, protocol) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, protocol(p).map_err(|m| bad(&m))?),
        None => (spec, "tcp".to_string()),
    };
    let (host_ip, rest) = if let Some(after) = addr.strip_prefix('[') {
        let (ip, rest) = after
            .split_once("]:")
            .ok_or_else(|| bad("an IPv6 address in brackets must be followed by :"))?;
        (ip.to_string(), rest)
    } else {
        match addr.matches(':').count() {
            0 | 1 => (String::new(), addr),
            2 => {
                let (ip, rest) = addr.split_once(':').unwrap_or(("", addr));
                (ip.to_string(), rest)
            }
            _ => return Err(bad("too many `:` (write an IPv6 address in brackets)")),
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None if !host_ip.is_empty() => return Err(bad("missing container port")),
        None => ("", rest),
    };
    let (c_lo, c_hi) = range(container).map_err(|m| bad(&m))?;
    let host_ports: Vec<Option<u16>> = if host.is_empty() {
        vec![None; (c_hi - c_lo + 1) as usize]
    } else {
        let (h_lo, h_hi) = range(host).map_err(|m| bad(&m))?;
        if h_hi - h_lo != c_hi - c_lo {
            return Err(bad(
                "the host and container ranges must have the same length",
            ));
        }
        (h_lo..=h_hi).map(Some).collect()
    };
    Ok((c_lo..=c_hi)
        .zip(host_ports)
        .map(|(c, h)| PortSpec {
            host_ip: host_ip.clone(),
            host_port: h,
            container_port: c,
            protocol: protocol.clone(),
        })
        .collect())
}

fn protocol(p: &str) -> Result<String, String> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" => Ok("tcp".into()),
        "udp" => Ok("udp".into()),
        other => Err(format!("protocol `{other}` is not supported (tcp or udp)")),
    }
}

fn port_number(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{s}` is not a port number (1-65535)")),
    }
}

fn range(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (port_number(lo)?, port_number(hi)?);
            if hi < lo {
                return Err(format!("`{s}` is an empty range"));
            }
            Ok((lo, hi))
        }
        None => {
            let p = port_number(s)?;
            Ok((p, p))
        }
    }
}

/// The long form: `target`, `published`, `host_ip`, `protocol`, `mode`. Errors carry the sub-key.
fn long_port(
    ctx: &mut Ctx,
    entries: &[(String, Node)],
    key: &str,
) -> Result<Vec<PortSpec>, (String, String)> {
    let mut target = None;
    let mut published = None;
    let mut host_ip = String::new();
    let mut proto = "tcp".to_string();
    for (k, v) in entries {
        let sub = format!(".{k}");
        let text = v.scalar_text();
        match k.as_str() {
            "target" => match text.as_deref().map(port_number) {
                Some(Ok(p)) => target = Some(p),
                Some(Err(m)) => return Err((m, sub)),
                None => return Err((format!("expected a port, found {}", v.kind()), sub)),
            },
            "published" => match text.as_deref() {
                Some("") => {}
                Some(t) => published = Some(range(t).map_err(|m| (m, sub.clone()))?),
                None if v.is_null() => {}
                None => return Err((format!("expected a port, found {}", v.kind()), sub)),
            },
            "host_ip" => host_ip = ctx.string(v, &format!("{key}{sub}")).unwrap_or_default(),
            "protocol" => {
                let p = ctx.string(v, &format!("{key}{sub}")).unwrap_or_default();
                proto = protocol(&p).map_err(|m| (m, sub))?;
            }
            "mode" => match text.as_deref() {
                Some("host") | Some("ingress") => {}
                _ => return Err(("mode must be host or ingress".into(), sub)),
            },
            k if k.starts_with("x-") => {}
            _ => return Err(("not supported by gitmoor; remove it".into(), sub)),
        }
    }
    let Some(target) = target else {
        return Err(("missing target (the container port)".into(), String::new()));
    };
    let host_port = match published {
        None => None,
        Some((lo, hi)) if lo == hi => Some(lo),
        Some(_) => return Err((
            "a published range needs a target range; use the short form \"3000-3001:3000-3001\""
                .into(),
            ".published".into(),
        )),
    };
    Ok(vec![PortSpec {
        host_ip,
        host_port,
        container_port: target,
        protocol: proto,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ip: &str, host: Option<u16>, c: u16, proto: &str) -> PortSpec {
        PortSpec {
            host_ip: ip.into(),
            host_port: host,
            container_port: c,
            protocol: proto.into(),
        }
    }

    #[test]
    fn short_forms() {
        let cases: Vec<(&str, Vec<PortSpec>)> = vec![
            ("3000", vec![p("", None, 3000, "tcp")]),
            ("3000:3000", vec![p("", Some(3000), 3000, "tcp")]),
            (
                "127.0.0.1:3000:3000",
                vec![p("127.0.0.1", Some(3000), 3000, "tcp")],
            ),
            ("127.0.0.1::3000", vec![p("127.0.0.1", None, 3000, "tcp")]),
            ("8080:80/udp", vec![p("", Some(8080), 80, "udp")]),
            ("53:53/UDP", vec![p("", Some(53), 53, "udp")]),
            (
                "3000-3001:4000-4001",
                vec![
                    p("", Some(3000), 4000, "tcp"),
                    p("", Some(3001), 4001, "tcp"),
                ],
            ),
            (
                "3000-3001",
                vec![p("", None, 3000, "tcp"), p("", None, 3001, "tcp")],
            ),
            ("[::1]:8080:80", vec![p("::1", Some(8080), 80, "tcp")]),
            ("[::1]::80", vec![p("::1", None, 80, "tcp")]),
        ];
        for (s, want) in cases {
            assert_eq!(short_port(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn short_form_errors() {
        for s in [
            "",
            "abc",
            "0",
            "70000",
            "3000:",
            "8000-8010:80",
            "3000-2999",
            "80/sctp",
            "1:2:3:4",
            "[::1]8080:80",
            "127.0.0.1:80",
        ] {
            let e = short_port(s).unwrap_err();
            assert!(e.contains(&format!("`{s}`")), "{s}: {e}");
        }
    }
}
