//! `gitmoor status` for a terminal, from the `/status` document.

use crate::status::doc::*;
use std::fmt::Write;

fn when(t: &str, now: i64) -> String {
    match parse_time(t) {
        Some(u) => format!(
            "{} ({})",
            t.replace('T', " ").replace('Z', " UTC"),
            ago(u, now)
        ),
        None => t.to_string(),
    }
}

/// Control characters (an escape sequence in a commit subject) are shown, not obeyed.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

pub fn render(d: &StatusDoc, now: i64) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "state: {} — {}",
        d.state.as_str(),
        clean(&d.state_reason)
    );
    if !d.health.ok {
        let _ = writeln!(
            o,
            "health: FAILING — {}",
            clean(d.health.reason.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(o, "repo: {} (branch {})", clean(&d.repo), clean(&d.branch));
    match &d.deployed {
        Some(c) => {
            let _ = writeln!(
                o,
                "deployed: {} {} ({})",
                clean(&c.short),
                clean(&c.subject),
                clean(&c.author)
            );
        }
        None => o.push_str("deployed: nothing yet\n"),
    }
    if let Some(h) = &d.branch_head {
        let _ = writeln!(
            o,
            "branch head: {} {} (fetched {})",
            clean(&h.commit.short),
            clean(&h.commit.subject),
            when(&h.fetched_at, now)
        );
    }
    if let Some(e) = &d.fetch.last_error {
        let _ = writeln!(
            o,
            "fetch: {} failure(s) in a row: {}",
            d.fetch.consecutive_failures,
            clean(e)
        );
    }
    if let Some(r) = &d.reconciling {
        let _ = writeln!(
            o,
            "reconciling: for {} s (trigger {})",
            r.running_secs,
            clean(&r.trigger)
        );
    }
    if let Some(r) = &d.last_reconcile {
        let _ = writeln!(
            o,
            "last reconcile: {} at {}, {} ms, trigger {}",
            clean(&r.result),
            when(&r.started_at, now),
            r.duration_ms,
            clean(&r.trigger)
        );
        for a in &r.actions {
            let stack = if a.stack.is_empty() {
                String::new()
            } else {
                format!("[{}] ", clean(&a.stack))
            };
            let why = if a.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", clean(&a.reasons.join(", ")))
            };
            let _ = writeln!(o, "  {stack}{} {}{why}", clean(&a.action), clean(&a.target));
        }
        if let Some(e) = &r.error {
            for line in e.lines() {
                let _ = writeln!(o, "  error: {}", clean(line));
            }
        }
    }
    if let Some(f) = &d.firewall {
        firewall(&mut o, f, now);
    }
    for b in &d.secrets.blocked {
        let _ = writeln!(
            o,
            "secrets: stack {} is blocked: {} is {}",
            clean(&b.stack),
            clean(&b.file),
            clean(&b.problem)
        );
    }
    for s in &d.stacks {
        let good = s
            .last_good_commit
            .as_deref()
            .map(crate::reconcile::short)
            .unwrap_or("-");
        let good = clean(good);
        let _ = writeln!(
            o,
            "stack {}: {} (last good {good})",
            clean(&s.name),
            clean(&s.health)
        );
        for v in &s.services {
            let _ = writeln!(
                o,
                "  {:<16} {:<12} {}{} {}",
                clean(&v.name),
                clean(&v.status),
                clean(&v.state),
                v.health
                    .as_deref()
                    .map(|h| format!("/{}", clean(h)))
                    .unwrap_or_default(),
                clean(v.container.as_deref().unwrap_or("-"))
            );
        }
        if let Some(e) = &s.error {
            let _ = writeln!(o, "  error: {}", clean(e));
        }
    }
    if let Some(n) = &d.next_poll {
        let _ = writeln!(o, "next poll: {}", when(n, now));
    }
    if !d.history.is_empty() {
        o.push_str("recent deployments:\n");
        for h in d.history.iter().take(5) {
            let _ = writeln!(
                o,
                "  {} {:<8} {} {}",
                when(&h.started_at, now),
                clean(&h.result),
                clean(&h.commit.short),
                clean(&h.commit.subject)
            );
        }
    }
    o
}

/// What is reachable from outside: UFW's open ports, the published container ports, the guard.
fn firewall(o: &mut String, f: &crate::status::firewall::FirewallView, now: i64) {
    let _ = writeln!(
        o,
        "firewall: ufw {}, default incoming {}, docker guard {} ({}), seen {}",
        if f.ufw_active { "active" } else { "INACTIVE" },
        clean(f.default_incoming.as_deref().unwrap_or("unknown")),
        clean(&f.docker_guard),
        if f.docker_guard_active {
            "active"
        } else {
            "not active"
        },
        when(&f.observed_at, now)
    );
    for r in &f.open {
        let _ = writeln!(
            o,
            "  open: {} from {}{}{}{}",
            clean(&r.port),
            clean(&r.from),
            if r.to == "any" {
                String::new()
            } else {
                format!(" to {}", clean(&r.to))
            },
            if r.ipv6 { " (v6)" } else { "" },
            if r.managed { "" } else { " (not gitmoor's)" }
        );
    }
    for p in &f.published {
        let from = if p.reachable_from.is_empty() {
            "no one".to_string()
        } else {
            p.reachable_from.join(", ")
        };
        let _ = writeln!(
            o,
            "  published: {} {}:{}/{} reachable from {}{}: {}",
            clean(&p.container),
            clean(&p.address),
            p.port,
            clean(&p.proto),
            clean(&from),
            if p.covered { "" } else { " (PAST UFW)" },
            clean(&p.note)
        );
    }
    for u in &f.unmanaged {
        let _ = writeln!(o, "  unmanaged: {}", clean(u));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::doc::sample;

    #[test]
    fn terminal_text_shows_escape_sequences_instead_of_obeying_them() {
        let text = render(&sample("\u{1b}[2Jwiped"), 1_746_100_800);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("?[2Jwiped"));
        assert!(text.starts_with("state: failed"), "{text}");
        assert!(text.contains("health: FAILING"));
    }
}
