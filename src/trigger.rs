//! Why a reconcile runs: the typed reasons, and the handle that asks the daemon for one.
//!
//! A module of its own, apart from `daemon`, because both sides of a nudge need it: the daemon
//! starts the status server and the secrets watcher, and they nudge the daemon. With the handle
//! here, `server` imports `trigger` rather than `daemon`, and there is no import circle.
//!
//! Reasons merge rather than queue: a reconcile fetches the branch head and reads the secrets
//! as they are when it starts, so one reconcile serves every nudge made before it, whatever
//! their number; the set of their reasons is what `/status` shows as its trigger.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// One reason to reconcile. The order of the variants is the order they are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    /// The daemon started.
    Start,
    /// The poll schedule came round.
    Poll,
    /// A signed delivery for a push to the branch, from this provider (`github`, `gitlab`…).
    Webhook { provider: &'static str },
    /// A file under the secrets dir changed, or the dir went away or may have missed events.
    Secrets,
    /// Anything else that asks (tests, tools).
    Nudge,
}

impl Why {
    /// The word `/status`, the page and the log show (a provider is not part of it: the
    /// webhook counters already tell providers apart).
    pub fn label(self) -> &'static str {
        match self {
            Why::Start => "start",
            Why::Poll => "poll",
            Why::Webhook { .. } => "webhook",
            Why::Secrets => "secrets",
            Why::Nudge => "nudge",
        }
    }
}

/// The reasons of one reconcile, merged (each at most once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reasons(BTreeSet<Why>);

impl Reasons {
    pub fn of(why: Why) -> Reasons {
        Reasons(BTreeSet::from([why]))
    }

    pub fn insert(&mut self, why: Why) {
        self.0.insert(why);
    }

    pub fn merge(&mut self, other: Reasons) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, why: Why) -> bool {
        self.0.contains(&why)
    }

    /// The providers of the webhook deliveries among them, for the log (`github,gitlab`).
    pub fn providers(&self) -> String {
        let names: Vec<&str> = self
            .0
            .iter()
            .filter_map(|w| match w {
                Why::Webhook { provider } => Some(*provider),
                _ => None,
            })
            .collect();
        names.join(",")
    }
}

/// `webhook+secrets`; `nudge` for none (a wake-up nobody named).
impl fmt::Display for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut labels: Vec<&str> = self.0.iter().map(|w| w.label()).collect();
        // Sorted by variant, so two providers' webhooks are neighbours.
        labels.dedup();
        if labels.is_empty() {
            return f.write_str(Why::Nudge.label());
        }
        f.write_str(&labels.join("+"))
    }
}

#[derive(Default)]
struct Shared {
    /// The reasons asked for since the daemon last took them; empty: nothing asked.
    pending: Mutex<Reasons>,
    notify: Notify,
}

/// A handle that asks the daemon for a reconcile soon (webhooks, secret edits, tests).
#[derive(Clone, Default)]
pub struct Trigger(Arc<Shared>);

impl Trigger {
    pub fn nudge(&self) {
        self.nudge_for(Why::Nudge);
    }

    pub fn nudge_for(&self, why: Why) {
        self.pending().insert(why);
        self.0.notify.notify_one();
    }

    /// Whether a reason was asked for since the last [`Trigger::take`].
    pub fn is_pending(&self) -> bool {
        !self.pending().is_empty()
    }

    /// The reasons asked for so far, cleared: the reconcile about to start serves them.
    pub fn take(&self) -> Reasons {
        std::mem::take(&mut *self.pending())
    }

    /// Returns after a nudge; may return for a nudge already taken (a permit left by nudges
    /// that came while nobody waited), so a caller checks [`Trigger::is_pending`] again.
    pub async fn nudged(&self) {
        self.0.notify.notified().await
    }

    fn pending(&self) -> MutexGuard<'_, Reasons> {
        // A set of small values cannot be left half-changed by a panic elsewhere.
        self.0
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB: Why = Why::Webhook { provider: "github" };
    const GITLAB: Why = Why::Webhook { provider: "gitlab" };

    #[test]
    fn nudges_merge_their_reasons_until_taken() {
        let t = Trigger::default();
        assert!(!t.is_pending());
        t.nudge_for(GITHUB);
        t.nudge_for(GITHUB);
        t.nudge_for(Why::Secrets);
        assert!(t.is_pending());
        let r = t.take();
        assert_eq!(r.to_string(), "webhook+secrets");
        assert!(r.contains(GITHUB) && r.contains(Why::Secrets) && !r.contains(Why::Nudge));
        assert!(!t.is_pending());
        assert!(t.take().is_empty());
        t.nudge();
        assert_eq!(t.take().to_string(), "nudge");
    }

    #[test]
    fn labels_keep_the_order_status_has_always_shown() {
        let mut r = Reasons::default();
        assert_eq!(r.to_string(), "nudge", "a wake-up nobody named");
        for w in [Why::Nudge, Why::Secrets, GITLAB, GITHUB] {
            r.insert(w);
        }
        assert_eq!(r.to_string(), "webhook+secrets+nudge");
        assert_eq!(r.providers(), "github,gitlab");
        let mut p = Reasons::of(Why::Poll);
        p.merge(r);
        assert_eq!(p.to_string(), "poll+webhook+secrets+nudge");
        assert_eq!(Reasons::of(Why::Start).to_string(), "start");
    }

    #[tokio::test]
    async fn a_nudge_before_anyone_waits_is_not_lost() {
        let t = Trigger::default();
        t.nudge();
        // The permit is kept: the wait returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), t.nudged())
            .await
            .expect("the earlier nudge wakes the waiter");
    }
}
