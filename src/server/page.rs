//! The status page: server-rendered HTML that reads on a phone, works without JavaScript (there
//! is none), refreshes itself with a meta refresh, and escapes every string it prints.

use crate::status::doc::*;
use std::fmt::Write;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root{--bg:#f4f5f7;--card:#fff;--fg:#1b1f24;--mute:#5b6470;--line:#e3e6ea;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--info:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;--mute:#8d96a0;--line:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--info:#58a6ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;overflow-wrap:anywhere}
main{max-width:46rem;margin:0 auto;padding:12px}
header h1{font-size:1.25rem;margin:4px 0 0}
header p{margin:2px 0 10px;color:var(--mute);font-size:.875rem}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px;margin:0 0 12px}
h2{font-size:1rem;margin:0 0 8px}
h3{font-size:.95rem;margin:0;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.state{border-left:6px solid var(--mute)}
.state p{margin:6px 0 0}
.big{font-size:1.4rem;font-weight:700;text-transform:uppercase;letter-spacing:.02em}
.pill{display:inline-block;padding:1px 8px;border-radius:999px;font-size:.8rem;font-weight:600;border:1px solid currentColor;white-space:nowrap}
.s-synced,.s-healthy,.s-ok,.s-success,.s-noop,.s-completed{color:var(--ok)}
.s-progressing,.s-starting,.s-out_of_sync,.s-skipped{color:var(--warn)}
.s-degraded,.s-failed,.s-invalid,.s-error,.s-missing,.s-not_in_repo,.s-unreadable,.s-incomplete{color:var(--bad)}
.state.s-synced{border-left-color:var(--ok)}.state.s-progressing,.state.s-out_of_sync{border-left-color:var(--warn)}.state.s-degraded,.state.s-failed{border-left-color:var(--bad)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:0}
dt{color:var(--mute);font-size:.875rem;padding-top:1px}
dd{margin:0;min-width:0}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:.85rem}
pre{white-space:pre-wrap;background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:8px;margin:8px 0 0;overflow-wrap:anywhere}
ul,ol{margin:6px 0 0;padding-left:1.1rem}
li{margin:3px 0}
.mute{color:var(--mute);font-size:.875rem}
.svc{display:flex;justify-content:space-between;gap:8px;border-top:1px solid var(--line);padding:7px 0;flex-wrap:wrap}
.svc:first-of-type{border-top:0}
.svc div{min-width:0}
.stack{border-top:1px solid var(--line);padding-top:10px;margin-top:10px}
.stack:first-of-type{border-top:0;padding-top:0;margin-top:0}
footer{color:var(--mute);font-size:.8rem;text-align:center;padding:4px 0 16px}
a{color:var(--info)}
"#;

fn pill(class: &str, text: &str) -> String {
    format!(
        "<span class=\"pill s-{}\">{}</span>",
        esc(class),
        esc(&text.replace('_', " "))
    )
}

fn when(t: &str, now: i64) -> String {
    match parse_time(t) {
        Some(u) => format!(
            "<time datetime=\"{}\">{}</time> <span class=\"mute\">({})</span>",
            esc(t),
            esc(&t.replace('T', " ").replace('Z', " UTC")),
            esc(&ago(u, now))
        ),
        None => esc(t),
    }
}

fn commit_line(c: &CommitView) -> String {
    format!(
        "<code>{}</code> {}<br><span class=\"mute\">{}</span>",
        esc(&c.short),
        esc(&c.subject),
        esc(&c.author)
    )
}

fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms / 1000) % 60)
    }
}

fn actions_list(out: &mut String, actions: &[crate::plan::render::ActionView], max: usize) {
    if actions.is_empty() {
        return;
    }
    out.push_str("<ul>");
    for a in actions.iter().take(max) {
        let stack = if a.stack.is_empty() {
            String::new()
        } else {
            format!("<span class=\"mute\">[{}]</span> ", esc(&a.stack))
        };
        let why = if a.reasons.is_empty() {
            String::new()
        } else {
            format!(" — {}", esc(&a.reasons.join(", ")))
        };
        let _ = write!(
            out,
            "<li>{stack}<b>{}</b> <code>{}</code>{why}</li>",
            esc(&a.action),
            esc(&a.target)
        );
    }
    if actions.len() > max {
        let _ = write!(
            out,
            "<li class=\"mute\">… and {} more</li>",
            actions.len() - max
        );
    }
    out.push_str("</ul>");
}

/// The whole page. `now` is unix seconds (for "5 min ago").
pub fn render(d: &StatusDoc, refresh_secs: u64, now: i64) -> String {
    let mut o = String::with_capacity(8192);
    document_head(&mut o, d, refresh_secs);
    page_header(&mut o, d);
    verdict(&mut o, d);
    deployed(&mut o, d, now);
    if let Some(r) = &d.last_reconcile {
        last_reconcile(&mut o, r, now);
    }
    if !d.secrets.blocked.is_empty() {
        blocked_secrets(&mut o, &d.secrets.blocked);
    }
    units(&mut o, d, now);
    certificates(&mut o, d);
    if let Some(f) = &d.firewall {
        firewall(&mut o, f);
    }
    stacks(&mut o, d, now);
    history(&mut o, &d.history, now);
    footer(&mut o, d, refresh_secs, now);
    o
}

/// The title carries the state, so a browser tab tells it without being opened.
fn document_head(o: &mut String, d: &StatusDoc, refresh_secs: u64) {
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{refresh_secs}\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>{} · gitmoor</title><style>{CSS}</style></head><body><main>",
        esc(&d.state.as_str().replace('_', " "))
    );
}

/// Which host this is: several gitmoor pages may be open side by side.
fn page_header(o: &mut String, d: &StatusDoc) {
    let _ = write!(
        o,
        "<header><h1>gitmoor</h1><p>{} · branch <b>{}</b> · instance {}</p></header>",
        esc(&d.repo),
        esc(&d.branch),
        esc(&d.instance)
    );
}

/// The verdict first: what a person opening the page wants to know.
fn verdict(o: &mut String, d: &StatusDoc) {
    let state = d.state.as_str();
    let _ = write!(
        o,
        "<section class=\"state s-{}\"><div class=\"big s-{}\">{}</div><p>{}</p>",
        esc(state),
        esc(state),
        esc(&state.replace('_', " ")),
        esc(&d.state_reason)
    );
    if !d.health.ok {
        let _ = write!(
            o,
            "<p class=\"s-failed\"><b>/health is failing:</b> {}</p>",
            esc(d.health.reason.as_deref().unwrap_or(""))
        );
    }
    if let Some(r) = &d.reconciling {
        let _ = write!(
            o,
            "<p class=\"mute\">reconciling for {} s (trigger: {})</p>",
            r.running_secs,
            esc(&r.trigger)
        );
    }
    o.push_str("</section>");
}

/// What runs beside what the branch asks for, and why they may differ (a failing fetch, a
/// pending nudge).
fn deployed(o: &mut String, d: &StatusDoc, now: i64) {
    o.push_str("<section><h2>Deployed</h2><dl>");
    match &d.deployed {
        Some(c) => {
            let _ = write!(
                o,
                "<dt>commit</dt><dd>{}</dd><dt>committed</dt><dd>{}</dd>",
                commit_line(c),
                when(&c.time, now)
            );
        }
        None => o.push_str("<dt>commit</dt><dd>nothing deployed yet</dd>"),
    }
    branch_head(o, d, now);
    if let Some(e) = &d.fetch.last_error {
        let _ = write!(
            o,
            "<dt>fetch</dt><dd class=\"s-failed\">{} failure(s) in a row: {}</dd>",
            d.fetch.consecutive_failures,
            esc(e)
        );
    }
    if let Some(n) = &d.next_poll {
        let _ = write!(o, "<dt>next poll</dt><dd>{}</dd>", when(n, now));
    }
    if let Some(p) = &d.pending {
        let _ = write!(
            o,
            "<dt>pending</dt><dd>{} asked for a reconcile</dd>",
            esc(p)
        );
    }
    o.push_str("</dl></section>");
}

/// A head that is already deployed reads "same": the commit is not repeated.
fn branch_head(o: &mut String, d: &StatusDoc, now: i64) {
    match &d.branch_head {
        Some(h) if d.deployed.as_ref().is_some_and(|c| c.sha == h.commit.sha) => {
            let _ = write!(
                o,
                "<dt>branch head</dt><dd>same, fetched {}</dd>",
                when(&h.fetched_at, now)
            );
        }
        Some(h) => {
            let _ = write!(
                o,
                "<dt>branch head</dt><dd>{}<br><span class=\"mute\">fetched {}</span></dd>",
                commit_line(&h.commit),
                when(&h.fetched_at, now)
            );
        }
        None => o.push_str("<dt>branch head</dt><dd>not fetched yet</dd>"),
    }
}

/// The plan and the whole error: what to read when the verdict is not `synced`.
fn last_reconcile(o: &mut String, r: &ReconcileView, now: i64) {
    let _ = write!(
        o,
        "<section><h2>Last reconcile {}</h2><dl><dt>started</dt><dd>{}</dd><dt>took</dt><dd>{}</dd><dt>trigger</dt><dd>{}</dd>",
        pill(&r.result, &r.result),
        when(&r.started_at, now),
        duration(r.duration_ms),
        esc(&r.trigger)
    );
    if let Some(c) = &r.commit {
        let _ = write!(o, "<dt>commit</dt><dd>{}</dd>", commit_line(c));
    }
    o.push_str("</dl>");
    actions_list(o, &r.actions, 50);
    if let Some(e) = &r.error {
        let _ = write!(o, "<pre>{}</pre>", esc(e));
    }
    o.push_str("</section>");
}

/// Listed apart from the stacks: a blocked secrets file is fixed on the host, not in Git.
fn blocked_secrets(o: &mut String, blocked: &[SecretBlock]) {
    o.push_str("<section><h2>Secrets blocking a deploy</h2><ul>");
    for b in blocked {
        let _ = write!(
            o,
            "<li><b>{}</b> {} <code>{}</code><pre>{}</pre></li>",
            esc(&b.stack),
            pill(&b.problem, &b.problem),
            esc(&b.file),
            esc(&b.detail)
        );
    }
    o.push_str("</ul></section>");
}

/// The sites' certificates: a renewal that did not happen shows days before the site breaks.
fn certificates(o: &mut String, d: &StatusDoc) {
    if d.certificates.is_empty() {
        return;
    }
    o.push_str("<section><h2>Certificates</h2><ul>");
    for c in &d.certificates {
        let (class, text) = if c.expiring_soon {
            ("degraded", format!("{} days left", c.days_left))
        } else {
            ("ok", format!("{} days left", c.days_left))
        };
        let _ = write!(
            o,
            "<li><b>{}</b> {} <span class=\"mute\">until {}</span></li>",
            esc(&c.name),
            pill(class, &text),
            esc(&c.not_after)
        );
    }
    o.push_str("</ul></section>");
}

/// What is reachable from outside: UFW's open ports, the published container ports (flagged
/// when Docker publishes them past UFW), whether the Docker guard is active, and the rules
/// gitmoor did not make.
fn firewall(o: &mut String, f: &crate::status::firewall::FirewallView) {
    let _ = write!(
        o,
        "<section><h2>Firewall</h2><p>UFW {} · default incoming {} · Docker guard {} {}</p><ul>",
        if f.ufw_active {
            pill("ok", "active")
        } else {
            pill("degraded", "inactive")
        },
        esc(f.default_incoming.as_deref().unwrap_or("unknown")),
        esc(&f.docker_guard),
        if f.docker_guard_active {
            pill("ok", "active")
        } else {
            pill("mute", "not active")
        }
    );
    for r in &f.open {
        let _ = write!(
            o,
            "<li>open <b>{}</b> from {}{}{}</li>",
            esc(&r.port),
            esc(&r.from),
            if r.ipv6 { " (v6)" } else { "" },
            if r.managed {
                String::new()
            } else {
                format!(" {}", pill("mute", "not gitmoor's"))
            }
        );
    }
    for p in &f.published {
        let from = if p.reachable_from.is_empty() {
            "no one".to_string()
        } else {
            p.reachable_from.join(", ")
        };
        let _ = write!(
            o,
            "<li>published <b>{}:{}/{}</b> ({}) reachable from {} {} <span class=\"mute\">{}</span></li>",
            esc(&p.address),
            p.port,
            esc(&p.proto),
            esc(&p.container),
            esc(&from),
            if p.covered {
                pill("ok", "covered")
            } else {
                pill("degraded", "past UFW")
            },
            esc(&p.note)
        );
    }
    for u in &f.unmanaged {
        let _ = write!(o, "<li class=\"mute\">unmanaged: {}</li>", esc(u));
    }
    o.push_str("</ul></section>");
}

/// Every unit's last apply, whatever its kind: what failed and what still runs.
fn units(o: &mut String, d: &StatusDoc, now: i64) {
    if d.units.is_empty() {
        return;
    }
    o.push_str("<section><h2>Units</h2><table><tr><th>kind</th><th>name</th><th>last apply</th><th>last good commit</th></tr>");
    for u in &d.units {
        let good = u
            .last_good_commit
            .as_deref()
            .map(crate::reconcile::short)
            .unwrap_or("-");
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td><code>{}</code></td></tr>",
            esc(&u.kind),
            esc(&u.name),
            pill(&u.result, &u.result),
            when(&u.updated_at, now),
            esc(good)
        );
    }
    o.push_str("</table></section>");
}

/// Container facts are as of `observed_at`, not of the request: the section says so.
fn stacks(o: &mut String, d: &StatusDoc, now: i64) {
    o.push_str("<section><h2>Stacks</h2>");
    if d.stacks.is_empty() {
        o.push_str("<p class=\"mute\">no stack yet</p>");
    }
    for s in &d.stacks {
        stack(o, s);
    }
    if let Some(t) = &d.observed_at {
        let _ = write!(
            o,
            "<p class=\"mute\">containers as listed {}</p>",
            when(t, now)
        );
    }
    o.push_str("</section>");
}

/// The stack's health, with its last good commit and error: what still runs after a failure.
fn stack(o: &mut String, s: &StackView) {
    let blocked = s
        .secrets_blocked
        .as_ref()
        .map(|b| format!(" {}", pill(&b.problem, &format!("secrets {}", b.problem))))
        .unwrap_or_default();
    let _ = write!(
        o,
        "<div class=\"stack\"><h3>{} {}{blocked}</h3>",
        esc(&s.name),
        pill(&s.health, &s.health)
    );
    if let Some(g) = &s.last_good_commit {
        let _ = write!(
            o,
            "<div class=\"mute\">last good commit <code>{}</code></div>",
            esc(crate::reconcile::short(g))
        );
    }
    if let Some(e) = &s.error {
        let _ = write!(o, "<pre>{}</pre>", esc(e));
    }
    for v in &s.services {
        service(o, v);
    }
    o.push_str("</div>");
}

/// gitmoor's verdict leads; Docker's own state and health follow for whoever digs further.
fn service(o: &mut String, v: &ServiceView) {
    let health = v
        .health
        .as_deref()
        .map(|h| format!(", {}", esc(h)))
        .unwrap_or_default();
    let _ = write!(
        o,
        "<div class=\"svc\"><div><b>{}</b><br><span class=\"mute\"><code>{}</code> · {}</span></div><div>{} <span class=\"mute\">{}{health}</span></div></div>",
        esc(&v.name),
        esc(v.container.as_deref().unwrap_or("no container")),
        esc(v.image.as_deref().unwrap_or("")),
        pill(&v.status, &v.status),
        esc(&v.state)
    );
}

/// Only each error's first line: the whole of the last one is in "Last reconcile".
fn history(o: &mut String, history: &[HistoryView], now: i64) {
    o.push_str("<section><h2>Recent deployments</h2>");
    if history.is_empty() {
        o.push_str("<p class=\"mute\">none yet</p>");
    } else {
        o.push_str("<ol>");
        for h in history {
            let _ = write!(
                o,
                "<li>{} <code>{}</code> {}<br><span class=\"mute\">{} · {} · {} action(s)</span>",
                pill(&h.result, &h.result),
                esc(&h.commit.short),
                esc(&h.commit.subject),
                when(&h.started_at, now),
                duration(h.duration_ms),
                h.actions.len()
            );
            if let Some(e) = &h.error {
                let first = e.lines().next().unwrap_or("");
                let _ = write!(o, "<br><span class=\"s-failed\">{}</span>", esc(first));
            }
            o.push_str("</li>");
        }
        o.push_str("</ol>");
    }
    o.push_str("</section>");
}

/// When the page was made, since it reloads itself and may be looked at much later.
fn footer(o: &mut String, d: &StatusDoc, refresh_secs: u64, now: i64) {
    let _ = writeln!(
        o,
        "<footer>generated {} · refreshes every {refresh_secs} s · <a href=\"/status\">JSON</a> · <a href=\"/metrics\">metrics</a></footer></main></body></html>",
        when(&d.generated_at, now)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::doc::sample;

    #[test]
    fn every_string_on_the_page_is_escaped() {
        let evil = r#"<script>alert('x')</script><img src=x onerror="y">&amp;"#;
        let html = render(&sample(evil), 10, 1_746_100_800);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("onerror=\""), "{html}");
        let escaped = esc(evil);
        // Every field of the sample shows up, escaped.
        assert!(html.matches(&escaped).count() >= 20, "{html}");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(html.contains("/health is failing"));
    }

    #[test]
    fn no_selector_is_listed_twice_in_a_rule() {
        for rule in CSS.split('}') {
            let Some((selectors, _)) = rule.rsplit_once('{') else {
                continue;
            };
            let list: Vec<&str> = selectors.split(',').map(str::trim).collect();
            let unique: std::collections::BTreeSet<&str> = list.iter().copied().collect();
            assert_eq!(unique.len(), list.len(), "{selectors}");
        }
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }
}
