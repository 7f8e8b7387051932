//! gitmoor keeps one Linux host in the state a Git repository describes.
//!
//! One reconcile is a pipeline, and the modules follow it:
//! source (Git) → spec (desired state) → observe (the host now) → plan (pure diff) → apply
//! (effects) → state (what was applied). `reconcile` runs it once; `daemon` runs it on a schedule.

pub mod apply;
pub mod config;
pub mod daemon;
pub mod hashkey;
pub mod home;
pub mod labels;
pub mod observe;
pub mod plan;
pub mod process;
pub mod random;
pub mod reconcile;
pub mod redact;
pub mod server;
pub mod source;
pub mod spec;
pub mod state;
pub mod status;
pub mod trigger;
pub mod watch;

/// `gitmoor status` for a terminal: the deployed commit, the last attempt, each stack.
pub fn status_text(state: &state::State) -> String {
    let mut s = String::new();
    match &state.applied {
        Some(c) => s.push_str(&format!(
            "deployed: {} {} ({})\n",
            reconcile::short(&c.sha),
            c.subject,
            c.author
        )),
        None => s.push_str("deployed: nothing yet\n"),
    }
    if let Some(a) = &state.last_attempt {
        s.push_str(&format!(
            "last attempt: {} {} → {}\n",
            reconcile::short(&a.commit.sha),
            a.commit.subject,
            a.result
        ));
        if let Some(e) = &a.error {
            s.push_str(&format!("  error: {e}\n"));
        }
    }
    for (key, st) in &state.units {
        // `stack/app` reads `stack app`, as units are named everywhere else.
        let name = key.replacen('/', " ", 1);
        let good = st
            .last_good_commit
            .as_deref()
            .map(reconcile::short)
            .unwrap_or("-");
        s.push_str(&format!("{name}: {} (last good {good})\n", st.result));
        if let Some(e) = &st.error {
            s.push_str(&format!("  error: {e}\n"));
        }
    }
    s
}
