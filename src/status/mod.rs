//! The live status, shared by the daemon and the status server.
//!
//! The daemon writes it at each step of its loop (reconcile started, head fetched, reconcile
//! finished with what Docker showed, next poll); the server only reads it. So a request never
//! calls Docker or Git: `/health` reads two atomics (the loop's heartbeat), `/status` and the
//! page copy the last snapshot under a lock held for microseconds.

pub mod build;
pub mod desired;
pub mod doc;
pub mod firewall;

use crate::config::Config;
use crate::observe::Observed;
use crate::plan::render::ActionView;
use crate::reconcile::short;
use crate::source::git::CommitInfo;
use crate::spec::error::{Findings, SpecError};
use crate::state::{CommitRef, ReconcileResult, State, UnitState};
use build::SeenContainer;
use desired::DesiredService;
use doc::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the reconcile duration histogram.
pub const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

const PHASE_STARTING: u8 = 0;
const PHASE_IDLE: u8 = 1;
const PHASE_RECONCILING: u8 = 2;
const PHASE_STOPPED: u8 = 3;

/// Counters behind `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// By `ReconcileResult::as_str`.
    pub reconciles: BTreeMap<String, u64>,
    /// Cumulative counts per bucket of `DURATION_BUCKETS`.
    pub duration_buckets: Vec<u64>,
    pub duration_sum: f64,
    pub duration_count: u64,
    pub last_success: Option<i64>,
    pub fetch_failures: u64,
    /// (provider, outcome) -> deliveries.
    pub webhooks: BTreeMap<(String, String), u64>,
    /// Debounced changes seen in the secrets dir.
    pub secrets_changes: u64,
}

/// What `/metrics` shows, and nothing more: a scrape gathers these few facts under the read
/// lock instead of copying the whole `/status` document with its history and their plans.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricView {
    /// What `/health` answers.
    pub up: bool,
    pub state: OverallState,
    pub reconciling: bool,
    pub branch: String,
    pub deployed: Option<CommitView>,
    /// Containers by Docker's (state, health), health `none` without a healthcheck.
    pub containers: BTreeMap<(String, String), u64>,
    /// Each stack, in `/status` order, with its services by gitmoor's verdict.
    pub services: Vec<(String, BTreeMap<String, u64>)>,
    /// Each recorded unit: (kind, name, whether its last apply failed).
    pub units: Vec<(String, String, bool)>,
    /// Each site certificate: (lineage, notAfter in unix seconds).
    pub certificates: Vec<(String, i64)>,
    pub secrets_blocked: usize,
    pub counters: Counters,
}

impl MetricView {
    /// The same facts read from a `/status` document: a scrape through the hub and one through
    /// the document must print the same bytes.
    pub fn from_doc(d: &StatusDoc, counters: &Counters) -> MetricView {
        MetricView {
            up: d.health.ok,
            state: d.state,
            reconciling: d.reconciling.is_some(),
            branch: d.branch.clone(),
            deployed: d.deployed.clone(),
            containers: container_counts(&d.stacks),
            services: service_counts(&d.stacks),
            units: unit_failures(&d.units),
            certificates: d
                .certificates
                .iter()
                .filter_map(|c| Some((c.name.clone(), parse_time(&c.not_after)?)))
                .collect(),
            secrets_blocked: d.secrets.blocked.len(),
            counters: counters.clone(),
        }
    }
}

fn container_counts(stacks: &[StackView]) -> BTreeMap<(String, String), u64> {
    let mut by = BTreeMap::new();
    for v in stacks
        .iter()
        .flat_map(|s| &s.services)
        .filter(|v| v.container.is_some())
    {
        let health = v.health.clone().unwrap_or_else(|| "none".into());
        *by.entry((v.state.clone(), health)).or_default() += 1;
    }
    by
}

fn unit_failures(units: &[UnitView]) -> Vec<(String, String, bool)> {
    units
        .iter()
        .map(|u| (u.kind.clone(), u.name.clone(), u.result != "success"))
        .collect()
}

fn service_counts(stacks: &[StackView]) -> Vec<(String, BTreeMap<String, u64>)> {
    stacks
        .iter()
        .map(|s| {
            let mut counts = BTreeMap::new();
            for v in &s.services {
                *counts.entry(v.status.clone()).or_default() += 1;
            }
            (s.name.clone(), counts)
        })
        .collect()
}

/// What one finished reconcile tells the status.
pub struct Finished<'a> {
    pub started_at: i64,
    pub duration: Duration,
    pub trigger: &'a str,
    pub result: ReconcileResult,
    pub commit: Option<&'a CommitInfo>,
    pub actions: Vec<ActionView>,
    pub error: Option<String>,
    pub findings: Option<&'a Findings>,
    pub desired: Option<BTreeMap<String, Vec<DesiredService>>>,
    pub observed: Option<&'a Observed>,
    /// The state file as the reconcile left it.
    pub state: Option<State>,
}

#[derive(Default)]
struct Live {
    deployed: Option<CommitView>,
    head: Option<HeadView>,
    running: Option<(i64, String)>,
    pending: Option<String>,
    last: Option<ReconcileView>,
    desired: Option<BTreeMap<String, Vec<DesiredService>>>,
    seen: Vec<SeenContainer>,
    observed_at: Option<i64>,
    recorded: BTreeMap<String, UnitState>,
    units: Vec<UnitView>,
    /// The sites' certificates: lineage -> notAfter (unix seconds), as last observed.
    cert_expiry: BTreeMap<String, i64>,
    /// UFW as the last reconcile that looked at it saw it, and when (unix seconds).
    firewall: Option<(crate::observe::ufw_parse::ObservedFirewall, i64)>,
    /// The ports gitmoor's containers publish, as last listed.
    published: Vec<crate::observe::PublishedPortSeen>,
    blocked: Vec<SecretBlock>,
    stacks: Vec<StackView>,
    history: Vec<HistoryView>,
    next_poll: Option<i64>,
    fetch: FetchView,
    counters: Counters,
}

impl Live {
    /// Takes in what a reconcile learnt about the host. What it did not learn (None) keeps its
    /// last known value: a reconcile that stopped early says nothing about the containers.
    fn update_host(
        &mut self,
        blocked: Option<Vec<SecretBlock>>,
        desired: Option<BTreeMap<String, Vec<DesiredService>>>,
        observed: Option<&Observed>,
        now: i64,
    ) {
        if let Some(blocked) = blocked {
            self.blocked = blocked;
        }
        if let Some(d) = desired {
            self.desired = Some(d);
        }
        if let Some(o) = observed {
            self.see_containers(o, now);
        }
        self.refresh_stacks();
    }

    /// `observed_at` goes with the containers: `/status` says how old its container facts are.
    fn see_containers(&mut self, o: &Observed, at: i64) {
        self.seen = build::seen_containers(o);
        self.observed_at = Some(at);
        if !o.cert_expiry.is_empty() || !o.certs.is_empty() {
            self.cert_expiry = o.cert_expiry.clone();
        }
        self.published = o.published.clone();
        // Only a reconcile of a repo with `ufw/` reads UFW: the last reading stands until then.
        if let crate::observe::Seen::Observed(f) = &o.firewall {
            self.firewall = Some((f.state.clone(), at));
        }
    }

    /// The stacks are worked out whenever one of their inputs changes, so a request only
    /// copies them.
    fn refresh_stacks(&mut self) {
        self.stacks = build::stack_views(
            self.desired.as_ref(),
            &self.seen,
            &self.recorded,
            &self.blocked,
        );
    }

    /// The reconcile that ran is the last one now. Its trigger is the one `begin` recorded when
    /// there is one: `finish` alone (a test, a stop) falls back to the one it was given.
    fn end_reconcile(&mut self, mut last: ReconcileView) {
        if let Some((_, trigger)) = self.running.take() {
            last.trigger = trigger;
        }
        self.last = Some(last);
    }
}

impl Finished<'_> {
    /// `last_reconcile` of `/status`; takes the actions, which nothing else needs.
    fn take_view(&mut self, finished_at: i64) -> ReconcileView {
        ReconcileView {
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(finished_at),
            duration_ms: self.duration.as_millis() as u64,
            trigger: self.trigger.to_string(),
            result: self.result.to_string(),
            commit: self.commit.map(commit_info_view),
            actions: std::mem::take(&mut self.actions),
            error: self.error.as_deref().map(redact_userinfo),
            errors: problems(self.findings.map(|x| x.errors.as_slice())),
            warnings: problems(self.findings.map(|x| x.warnings.as_slice())),
        }
    }
}

impl Counters {
    /// Counters only grow from the daemon's start (Prometheus works out the rates); the last
    /// success moves only when the commit ended up running.
    fn count(&mut self, result: ReconcileResult, duration: Duration, now: i64) {
        *self.reconciles.entry(result.to_string()).or_default() += 1;
        self.observe_duration(duration);
        if result.is_ok() {
            self.last_success = Some(now);
        }
    }

    /// Prometheus buckets are cumulative: a duration counts in every bucket at or above it.
    fn observe_duration(&mut self, duration: Duration) {
        let secs = duration.as_secs_f64();
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.duration_buckets[i] += 1;
            }
        }
        self.duration_sum += secs;
        self.duration_count += 1;
    }
}

/// The overall state and why; `/status` and `/metrics` must agree on it.
fn overall(l: &Live) -> (OverallState, String) {
    let last = l.last.as_ref();
    build::overall(&build::OverallInputs {
        reconciling: l.running.is_some(),
        last_result: last.map(|r| r.result.as_str()),
        last_error: last.and_then(|r| r.error.as_deref()),
        last_commit: last.and_then(|r| r.commit.as_ref()),
        deployed: l.deployed.as_ref(),
        head: l.head.as_ref(),
        pending: l.pending.as_deref(),
        stacks: &l.stacks,
    })
}

/// The daemon's side writes, the server's side reads. Cheap to share (`Arc<StatusHub>`).
pub struct StatusHub {
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds since `epoch` when the phase began.
    since_ms: AtomicU64,
    max_reconcile: Duration,
    repo: String,
    branch: String,
    instance: String,
    poll: String,
    secrets_dir: PathBuf,
    history_len: usize,
    /// `letsencrypt.warn_days`: a certificate closer to its end is flagged.
    cert_warn_days: u32,
    /// `firewall.docker_guard`, shown beside whether the guard is active.
    docker_guard: crate::config::firewall::DockerGuard,
    live: RwLock<Live>,
}

pub fn commit_view(c: &CommitRef) -> CommitView {
    CommitView {
        sha: c.sha.clone(),
        short: short(&c.sha).to_string(),
        subject: c.subject.clone(),
        author: c.author.clone(),
        time: rfc3339(c.time),
    }
}

fn commit_info_view(c: &CommitInfo) -> CommitView {
    commit_view(&CommitRef {
        sha: c.sha.clone(),
        subject: c.subject.clone(),
        author: c.author.clone(),
        time: c.time,
    })
}

fn problems(errors: Option<&[SpecError]>) -> Vec<ProblemView> {
    errors
        .unwrap_or_default()
        .iter()
        .map(|e| ProblemView {
            file: e.file.clone(),
            line: e.line,
            key: e.key.clone(),
            message: e.message.clone(),
            fix: e.fix.clone(),
        })
        .collect()
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl StatusHub {
    pub fn new(cfg: &Config) -> StatusHub {
        StatusHub {
            epoch: Instant::now(),
            phase: AtomicU8::new(PHASE_STARTING),
            since_ms: AtomicU64::new(0),
            max_reconcile: Duration::from_secs(cfg.health_max_reconcile_secs),
            repo: redact_userinfo(&cfg.repo),
            branch: cfg.branch.clone(),
            instance: cfg.instance.clone(),
            poll: cfg.poll.clone(),
            secrets_dir: cfg.secrets_dir.clone(),
            history_len: cfg.status_history,
            cert_warn_days: cfg.letsencrypt.warn_days,
            docker_guard: cfg.firewall.docker_guard,
            live: RwLock::new(Live {
                counters: Counters {
                    duration_buckets: vec![0; DURATION_BUCKETS.len()],
                    ..Counters::default()
                },
                ..Live::default()
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Live> {
        // A panic while writing leaves plain data behind: keep serving it.
        self.live.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Live> {
        self.live.write().unwrap_or_else(|p| p.into_inner())
    }

    fn set_phase(&self, phase: u8) {
        self.since_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
        self.phase.store(phase, Ordering::Release);
    }

    /// `/health`: Ok while the loop is alive; Err with the reason when it is stuck in one
    /// reconcile (or in starting up) beyond the bound, or has stopped. Two atomic loads.
    pub fn health(&self) -> Result<(), String> {
        let phase = self.phase.load(Ordering::Acquire);
        let since = self.since_ms.load(Ordering::Acquire);
        let elapsed =
            Duration::from_millis((self.epoch.elapsed().as_millis() as u64).saturating_sub(since));
        match phase {
            PHASE_IDLE => Ok(()),
            PHASE_STOPPED => Err("the daemon loop has stopped".into()),
            _ if elapsed <= self.max_reconcile => Ok(()),
            p => Err(format!(
                "{} for {} s, longer than health_max_reconcile_secs ({} s)",
                if p == PHASE_STARTING {
                    "starting up"
                } else {
                    "one reconcile has been running"
                },
                elapsed.as_secs(),
                self.max_reconcile.as_secs()
            )),
        }
    }

    /// Reads what the state file knows (at start, before the first reconcile).
    pub fn load_state(&self, state: &State) {
        let mut l = self.write();
        self.apply_state(&mut l, state);
        l.refresh_stacks();
    }

    fn apply_state(&self, l: &mut Live, state: &State) {
        l.deployed = state.applied.as_ref().map(commit_view);
        l.recorded = state.stacks();
        l.units = build::unit_views(&state.units);
        l.history = state
            .history
            .iter()
            .take(self.history_len)
            .map(|a| HistoryView {
                commit: commit_view(&a.commit),
                started_at: rfc3339(a.started),
                duration_ms: a.duration_ms,
                result: a.result.to_string(),
                actions: a.actions.clone(),
                error: a.error.as_deref().map(redact_userinfo),
            })
            .collect();
        if l.counters.last_success.is_none() {
            l.counters.last_success = state
                .history
                .iter()
                .find(|a| a.result.is_ok())
                .map(|a| a.started + (a.duration_ms / 1000) as i64);
        }
    }

    /// A reconcile starts; `trigger` says what asked for it.
    pub fn begin(&self, trigger: &str) {
        {
            let mut l = self.write();
            l.running = Some((now_unix(), trigger.to_string()));
            l.pending = None;
            // The poll that was next is being served (or passed over): the daemon sets the next
            // one when this reconcile ends; meanwhile a time in the past would mislead.
            l.next_poll = None;
        }
        self.set_phase(PHASE_RECONCILING);
    }

    /// A webhook or a secrets edit asked for a reconcile that has not started yet.
    pub fn set_pending(&self, why: &str) {
        self.write().pending = Some(why.to_string());
    }

    pub fn fetched(&self, head: &CommitInfo) {
        let mut l = self.write();
        let now = now_unix();
        l.head = Some(HeadView {
            commit: commit_info_view(head),
            fetched_at: rfc3339(now),
        });
        l.fetch.last_success_at = Some(rfc3339(now));
        l.fetch.last_error = None;
        l.fetch.consecutive_failures = 0;
    }

    pub fn fetch_failed(&self, error: &str) {
        let mut l = self.write();
        l.fetch.last_error = Some(redact_userinfo(error));
        l.fetch.consecutive_failures += 1;
        l.fetch.failures_total += 1;
        l.counters.fetch_failures += 1;
    }

    /// A reconcile ended (whatever its result).
    pub fn finish(&self, mut f: Finished) {
        let now = now_unix();
        // Worked out before the lock is taken, as readers wait on the lock (the secrets blocks
        // look at the disk).
        let last = f.take_view(now);
        let blocked = self.blocked_after(&f, last.error.as_deref());
        let mut l = self.write();
        if let Some(state) = &f.state {
            self.apply_state(&mut l, state);
        }
        l.update_host(blocked, f.desired.take(), f.observed, now);
        l.counters.count(f.result, f.duration, now);
        l.end_reconcile(last);
        drop(l);
        self.set_phase(PHASE_IDLE);
    }

    /// The secrets files that block the deploy, as far as this reconcile can tell; None when it
    /// cannot tell (it stopped before reading the spec), so the last known blocks stand.
    fn blocked_after(&self, f: &Finished, error: Option<&str>) -> Option<Vec<SecretBlock>> {
        match f.result {
            // The spec was read: what blocks it now is all there is.
            ReconcileResult::Invalid | ReconcileResult::Skipped => {
                let lines: Vec<String> = match f.findings {
                    Some(x) if !x.errors.is_empty() => {
                        x.errors.iter().map(|e| e.to_string()).collect()
                    }
                    _ => error.map(str::to_string).into_iter().collect(),
                };
                Some(build::secrets_blocks(&lines, &self.secrets_dir))
            }
            ReconcileResult::Success | ReconcileResult::Noop | ReconcileResult::Failed => {
                Some(Vec::new())
            }
            ReconcileResult::Error => None,
        }
    }

    /// A fresh look at the containers between reconciles (while some are still starting).
    pub fn observed(&self, o: &Observed) {
        let mut l = self.write();
        l.see_containers(o, now_unix());
        l.refresh_stacks();
    }

    /// Whether a container's healthcheck has not decided yet (worth another look soon).
    pub fn any_starting(&self) -> bool {
        self.read()
            .stacks
            .iter()
            .flat_map(|s| &s.services)
            .any(|v| v.status == "starting")
    }

    pub fn set_next_poll(&self, unix: Option<i64>) {
        self.write().next_poll = unix;
    }

    pub fn stopped(&self) {
        self.write().running = None;
        self.set_phase(PHASE_STOPPED);
    }

    pub fn count_webhook(&self, provider: &str, outcome: &str) {
        *self
            .write()
            .counters
            .webhooks
            .entry((provider.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    pub fn count_secrets_change(&self) {
        self.write().counters.secrets_changes += 1;
    }

    pub fn counters(&self) -> Counters {
        self.read().counters.clone()
    }

    /// What `/metrics` needs, as of now (see `MetricView`).
    pub fn metric_view(&self) -> MetricView {
        let up = self.health().is_ok();
        let l = self.read();
        MetricView {
            up,
            state: overall(&l).0,
            reconciling: l.running.is_some(),
            branch: self.branch.clone(),
            deployed: l.deployed.clone(),
            containers: container_counts(&l.stacks),
            services: service_counts(&l.stacks),
            units: unit_failures(&l.units),
            certificates: l.cert_expiry.iter().map(|(n, t)| (n.clone(), *t)).collect(),
            secrets_blocked: l.blocked.len(),
            counters: l.counters.clone(),
        }
    }

    /// The `/status` document, as of now.
    pub fn doc(&self) -> StatusDoc {
        let health = self.health();
        let l = self.read();
        let now = now_unix();
        let (state, state_reason) = overall(&l);
        StatusDoc {
            schema: SCHEMA,
            generated_at: rfc3339(now),
            state,
            state_reason,
            health: HealthView {
                ok: health.is_ok(),
                reason: health.err(),
            },
            repo: self.repo.clone(),
            branch: self.branch.clone(),
            instance: self.instance.clone(),
            poll: self.poll.clone(),
            deployed: l.deployed.clone(),
            branch_head: l.head.clone(),
            reconciling: l.running.as_ref().map(|(t, why)| RunningView {
                started_at: rfc3339(*t),
                running_secs: (now - t).max(0) as u64,
                trigger: why.clone(),
            }),
            pending: l.pending.clone(),
            last_reconcile: l.last.clone(),
            units: l.units.clone(),
            stacks: l.stacks.clone(),
            certificates: build::cert_views(&l.cert_expiry, now, self.cert_warn_days),
            firewall: l.firewall.as_ref().map(|(f, at)| {
                firewall::firewall_view(f, &l.published, self.docker_guard, rfc3339(*at))
            }),
            observed_at: l.observed_at.map(rfc3339),
            secrets: SecretsView {
                dir: self.secrets_dir.display().to_string(),
                blocked: l.blocked.clone(),
            },
            history: l.history.clone(),
            next_poll: l.next_poll.map(rfc3339),
            fetch: l.fetch.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn hub(max: u64) -> StatusHub {
        let cfg = Config::parse(
            &format!(
                "repo: https://bot:tok3n@example.org/x.git\nhealth_max_reconcile_secs: {max}\n"
            ),
            Path::new("/c.yaml"),
        )
        .unwrap();
        StatusHub::new(&cfg)
    }

    #[test]
    fn health_follows_the_heartbeat() {
        let h = hub(1);
        assert!(h.health().is_ok(), "starting within the bound");
        h.begin("start");
        assert!(h.health().is_ok());
        // Pretend the reconcile began two seconds ago.
        h.since_ms.store(0, Ordering::Release);
        std::thread::sleep(Duration::from_millis(1100));
        let err = h.health().unwrap_err();
        assert!(err.contains("health_max_reconcile_secs (1 s)"), "{err}");
        h.finish(Finished {
            started_at: 0,
            duration: Duration::from_secs(2),
            trigger: "start",
            result: ReconcileResult::Noop,
            commit: None,
            actions: vec![],
            error: None,
            findings: None,
            desired: None,
            observed: None,
            state: None,
        });
        assert!(h.health().is_ok());
        h.stopped();
        assert!(h.health().is_err());
    }

    #[test]
    fn the_document_counts_and_hides_user_info() {
        let h = hub(900);
        let doc = h.doc();
        assert_eq!(doc.repo, "https://***@example.org/x.git");
        assert_eq!(doc.state, OverallState::Progressing);
        h.begin("webhook");
        h.fetch_failed("cannot fetch https://bot:tok3n@example.org/x.git: timeout");
        h.finish(Finished {
            started_at: 0,
            duration: Duration::from_millis(300),
            trigger: "webhook",
            result: ReconcileResult::Error,
            commit: None,
            actions: vec![],
            error: Some("fetch https://bot:tok3n@example.org/x.git failed".into()),
            findings: None,
            desired: None,
            observed: None,
            state: None,
        });
        let doc = h.doc();
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("tok3n"), "{text}");
        assert_eq!(doc.state, OverallState::Failed);
        assert_eq!(doc.fetch.consecutive_failures, 1);
        assert_eq!(doc.last_reconcile.unwrap().trigger, "webhook");
        let c = h.counters();
        assert_eq!(c.reconciles["error"], 1);
        assert_eq!(c.fetch_failures, 1);
        // 0.3 s lands in the 0.5 s bucket and above, not in 0.25 s.
        assert_eq!(c.duration_buckets[2], 0);
        assert_eq!(c.duration_buckets[3], 1);
    }
}
