//! One reconcile, the loop body: fetch → spec → observe → plan → apply → record.
//!
//! It is level-triggered: it never learns why it runs (a poll, a webhook, a secret edit), only
//! compares the branch head with the host, so running it twice is harmless. Bad input fails
//! before the first effect; the same failing inputs are not tried again until they change.

use crate::apply::docker::DockerExecutor;
use crate::apply::execute::{execute_with, ApplyInputs, ApplyOptions, ApplyReport};
use crate::config::Config;
use crate::observe::docker::observe;
use crate::observe::Observed;
use crate::plan::{plan, Plan, PlanContext};
use crate::source::git::{CommitInfo, GitSource, RepoAuth};
use crate::source::snapshot::Snapshot;
use crate::spec::error::Findings;
use crate::spec::load::{load_host_spec_with_profiles, LoadOptions};
use crate::spec::model::{DependsCondition, HostSpec};
use crate::state::{Attempt, CommitRef, ReconcileResult, State};
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, info_span, warn, Instrument};

/// Plan only, or plan and apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The host already matched the commit.
    Noop,
    /// Changes were made and all succeeded.
    Applied,
    /// `Mode::Plan`: nothing was done.
    Planned,
    /// Bad input (spec errors, an impossible plan): nothing on the host changed.
    Invalid,
    /// An effect failed; see the report.
    Failed,
    /// The same inputs failed before; not tried again until they change.
    Skipped,
}

impl Verdict {
    /// The result it is recorded and reported as.
    pub fn result(self) -> ReconcileResult {
        match self {
            Verdict::Noop => ReconcileResult::Noop,
            Verdict::Applied => ReconcileResult::Success,
            Verdict::Invalid => ReconcileResult::Invalid,
            Verdict::Failed => ReconcileResult::Failed,
            Verdict::Skipped => ReconcileResult::Skipped,
            // Only `gitmoor plan` stops there, and it records and reports nothing; were a plan
            // ever reported, nothing was changed.
            Verdict::Planned => ReconcileResult::Noop,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub commit: CommitInfo,
    pub verdict: Verdict,
    pub findings: Findings,
    pub plan: Option<Plan>,
    pub report: Option<ApplyReport>,
    pub error: Option<String>,
    /// The commit's stacks and their services (names only), when its spec could be read.
    pub desired: Option<BTreeMap<String, Vec<DesiredService>>>,
    /// The host as it was left: observed again after an apply, or the observation the plan was
    /// made from when nothing was applied. None when the reconcile stopped before observing.
    pub observed: Option<Observed>,
}

/// One service of the commit, as `/status` shows it: no environment, nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub name: String,
    pub image: String,
    /// Another service waits for it with `service_completed_successfully`: exiting is its job.
    pub one_shot: bool,
}

/// The names `/status` needs from a spec: stacks, their services, their images.
pub fn desired_services(spec: &HostSpec) -> BTreeMap<String, Vec<DesiredService>> {
    spec.stacks
        .iter()
        .map(|(name, stack)| {
            let services = stack
                .services
                .iter()
                .map(|(svc, s)| DesiredService {
                    name: svc.clone(),
                    image: s.image.clone(),
                    one_shot: stack.services.values().any(|other| {
                        other.depends_on.get(svc) == Some(&DependsCondition::CompletedSuccessfully)
                    }),
                })
                .collect();
            (name.clone(), services)
        })
        .collect()
}

/// Holds what lives across reconciles: the Git cache, the Docker connection, the state dir lock.
pub struct Reconciler {
    pub cfg: Config,
    source: Arc<Mutex<GitSource>>,
    pub exec: DockerExecutor,
    _lock: std::fs::File,
}

impl Reconciler {
    /// Opens the state dir (taking its lock, so two gitmoor processes never apply at once), the
    /// Git cache and the Docker connection.
    /// `exclusive` takes the lock (apply, run); `gitmoor plan` reads without it.
    pub async fn new(cfg: Config, exclusive: bool) -> anyhow::Result<Reconciler> {
        std::fs::create_dir_all(&cfg.state_dir)
            .with_context(|| format!("cannot create state_dir {}", cfg.state_dir.display()))?;
        let lock_path = cfg.state_dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if exclusive {
            lock.try_lock().map_err(|_| {
                anyhow::anyhow!(
                    "another gitmoor process holds {}; stop it (systemctl stop gitmoor) or wait for it to finish",
                    lock_path.display()
                )
            })?;
        }
        let auth = RepoAuth {
            ssh_key: cfg.ssh_key.clone(),
            ssh_key_passphrase_file: cfg.ssh_key_passphrase_file.clone(),
            known_hosts: cfg.known_hosts.clone(),
            token_file: cfg.token_file.clone(),
            ca_file: cfg.ca_file.clone(),
        };
        let (url, cache) = (cfg.repo.clone(), cfg.repo_cache_dir());
        let source =
            tokio::task::spawn_blocking(move || GitSource::open(&url, auth, &cache)).await??;
        let exec = DockerExecutor::connect(cfg.docker_host.as_deref())
            .await?
            .with_build_timeout(Duration::from_secs(cfg.build_timeout_secs));
        Ok(Reconciler {
            cfg,
            source: Arc::new(Mutex::new(source)),
            exec,
            _lock: lock,
        })
    }

    /// Fetches and returns the branch head.
    pub async fn fetch(&self) -> anyhow::Result<CommitInfo> {
        let src = self.source.clone();
        let branch = self.cfg.branch.clone();
        let head = tokio::task::spawn_blocking(move || {
            let g = src
                .lock()
                .map_err(|_| anyhow::anyhow!("git source lock poisoned"))?;
            g.fetch(&branch).map_err(anyhow::Error::from)
        })
        .await??;
        Ok(head)
    }

    async fn snapshot(&self, sha: &str) -> anyhow::Result<Snapshot> {
        let src = self.source.clone();
        let sha = sha.to_string();
        tokio::task::spawn_blocking(move || {
            let g = src
                .lock()
                .map_err(|_| anyhow::anyhow!("git source lock poisoned"))?;
            g.snapshot(&sha).map_err(anyhow::Error::from)
        })
        .await?
    }

    /// Fetch, then plan (and in `Mode::Apply` apply) the branch head. `retry` tries inputs that
    /// failed before (the CLI's `apply` does; the daemon does not).
    pub async fn reconcile(&self, mode: Mode, retry: bool) -> anyhow::Result<Outcome> {
        let head = self.fetch().await?;
        self.reconcile_fetched(head, mode, retry).await
    }

    /// The rest of a reconcile, for a caller that fetched itself (the daemon, which reports a
    /// fetch failure apart from the reconcile that follows).
    pub async fn reconcile_fetched(
        &self,
        head: CommitInfo,
        mode: Mode,
        retry: bool,
    ) -> anyhow::Result<Outcome> {
        let span = info_span!("reconcile", commit = %short(&head.sha));
        self.reconcile_commit(head, mode, retry)
            .instrument(span)
            .await
    }

    async fn reconcile_commit(
        &self,
        head: CommitInfo,
        mode: Mode,
        retry: bool,
    ) -> anyhow::Result<Outcome> {
        let snap = self.snapshot(&head.sha).await?;
        let mut run = Attempting {
            started: Instant::now(),
            started_unix: chrono::Utc::now().timestamp(),
            inputs: inputs_hash(&head.sha, &self.cfg.secrets_dir),
            state: State::load(&self.cfg.state_dir)?,
            mode,
        };
        let mut outcome = Outcome {
            commit: head.clone(),
            verdict: Verdict::Planned,
            findings: Findings::default(),
            plan: None,
            report: None,
            error: None,
            desired: None,
            observed: None,
        };

        if mode == Mode::Apply && !retry {
            if let Some(prev) = &run.state.last_attempt {
                if prev.inputs == run.inputs && should_wait(prev, run.started_unix) {
                    outcome.verdict = Verdict::Skipped;
                    outcome.error = prev.error.clone();
                    return Ok(outcome);
                }
            }
        }

        let opts = LoadOptions {
            secrets_dir: Some(self.cfg.secrets_dir.clone()),
            bind_root: self.cfg.bind_root(),
            limits: self.cfg.limits,
            policy: self.cfg.policy.clone(),
        };
        let (spec, findings) = load_host_spec_with_profiles(&snap, &opts, &self.cfg.profiles);
        for w in &findings.warnings {
            warn!("{w}");
        }
        outcome.findings = findings.clone();
        let spec: HostSpec = match spec {
            Some(s) if findings.is_ok() => s,
            _ => {
                let msg = findings
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n");
                return self.invalid(&mut run, outcome, msg);
            }
        };

        outcome.desired = Some(desired_services(&spec));
        let auth =
            crate::apply::docker::registry::load_optional(self.cfg.registry_auth.as_deref())?;
        let mut observed = self.observe_for(&spec, auth.as_ref()).await?;
        let plan = match self.plan_for(&spec, &mut observed, &head.sha).await? {
            Ok(p) => p,
            Err(e) => {
                outcome.observed = Some(observed);
                return self.invalid(&mut run, outcome, e.to_string());
            }
        };
        outcome.plan = Some(plan.clone());
        if mode == Mode::Plan {
            outcome.observed = Some(observed);
            return Ok(outcome);
        }
        if plan.is_empty() {
            outcome.verdict = Verdict::Noop;
            outcome.observed = Some(observed);
            let results = spec.stacks.keys().map(|k| (k.clone(), Ok(()))).collect();
            self.record(&mut run, &outcome, &results)?;
            return Ok(outcome);
        }

        for line in plan.render_text().lines() {
            info!("plan: {line}");
        }
        materialise_stacks(&snap, &spec, &self.cfg.bind_root())?;
        let apply_opts = ApplyOptions {
            health_timeout: Duration::from_secs(self.cfg.health_timeout_secs),
            stop_grace_secs: 10,
        };
        let apply_inputs = ApplyInputs {
            snapshot: &snap,
            auth: auth.as_ref(),
        };
        let report = execute_with(&plan, &self.exec, &apply_opts, &apply_inputs).await;
        outcome.verdict = if report.is_ok() {
            Verdict::Applied
        } else {
            Verdict::Failed
        };
        outcome.error = report.first_error();
        let mut results = report.stacks.clone();
        for k in spec.stacks.keys() {
            results.entry(k.clone()).or_insert(Ok(()));
        }
        outcome.report = Some(report);
        // What the apply left behind, for `/status`: four listing calls, once per apply.
        outcome.observed = match observe(&self.exec.docker, &self.cfg.instance).await {
            Ok(o) => Some(o),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "cannot observe the host after the apply");
                None
            }
        };
        self.record(&mut run, &outcome, &results)?;
        match outcome.verdict {
            Verdict::Applied => info!(
                duration_ms = run.started.elapsed().as_millis() as u64,
                "applied"
            ),
            _ => warn!(
                error = outcome.error.as_deref().unwrap_or(""),
                "apply failed"
            ),
        }
        Ok(outcome)
    }

    /// The host as the plan needs it: gitmoor's objects of this instance, the platform of each
    /// local image a service pins with `platform:`, and the registry's digest of every
    /// `pull_policy: always` tag (a moved tag is redeployed; a registry that
    /// cannot be asked only costs a warning).
    async fn observe_for(
        &self,
        spec: &HostSpec,
        auth: Option<&crate::apply::docker::registry::RegistryAuth>,
    ) -> anyhow::Result<Observed> {
        let mut observed = observe(&self.exec.docker, &self.cfg.instance).await?;
        for svc in spec.stacks.values().flat_map(|s| s.services.values()) {
            let wants_platform = svc
                .platform
                .as_deref()
                .is_some_and(|p| !p.trim().is_empty());
            if wants_platform && svc.build.is_none() {
                let tag = crate::plan::normalize_image(&svc.image);
                if let Some(p) = self.exec.image_platform(&svc.image).await? {
                    observed.image_platforms.insert(tag, p);
                }
            }
            if svc.pull_policy == crate::spec::model::PullPolicy::Always && svc.build.is_none() {
                match self.exec.remote_digest(&svc.image, auth).await {
                    Ok(d) => {
                        observed
                            .remote_digests
                            .insert(crate::plan::normalize_image(&svc.image), d);
                    }
                    Err(e) => {
                        warn!(image = %svc.image, error = %format!("{e:#}"), "cannot read the tag's digest on its registry")
                    }
                }
            }
        }
        Ok(observed)
    }

    /// Plans `spec` against `observed`. Containers gitmoor does not own matter only where the
    /// plan would create one: their names are looked up (one call) only then, and the plan made
    /// again with them. The outer error is Docker's; the inner one, a plan that cannot be done.
    async fn plan_for(
        &self,
        spec: &HostSpec,
        observed: &mut Observed,
        commit: &str,
    ) -> anyhow::Result<Result<Plan, crate::plan::PlanError>> {
        let ctx = PlanContext {
            commit: commit.to_string(),
            bind_root: self.cfg.bind_root(),
            instance: self.cfg.instance.clone(),
        };
        let planned = plan(spec, observed, &ctx);
        if let Ok(p) = &planned {
            let names = p.names_to_create();
            if !names.is_empty() {
                observed.all_container_names =
                    crate::observe::docker::container_names(&self.exec.docker, &names).await?;
                return Ok(plan(spec, observed, &ctx));
            }
        }
        Ok(planned)
    }

    /// Ends a reconcile on bad input: nothing on the host changed. In `Mode::Apply` the attempt
    /// is recorded, so the same inputs are not tried again until they change.
    fn invalid(
        &self,
        run: &mut Attempting,
        mut outcome: Outcome,
        error: String,
    ) -> anyhow::Result<Outcome> {
        outcome.verdict = Verdict::Invalid;
        outcome.error = Some(error);
        self.record(run, &outcome, &BTreeMap::new())?;
        Ok(outcome)
    }

    /// Writes the attempt and each stack's result to the state file (`Mode::Apply` only: a plan
    /// changes nothing and leaves no trace).
    fn record(
        &self,
        run: &mut Attempting,
        o: &Outcome,
        results: &BTreeMap<String, Result<(), String>>,
    ) -> anyhow::Result<()> {
        if run.mode != Mode::Apply {
            return Ok(());
        }
        let attempt = Attempt {
            commit: CommitRef {
                sha: o.commit.sha.clone(),
                subject: o.commit.subject.clone(),
                author: o.commit.author.clone(),
                time: o.commit.time,
            },
            inputs: run.inputs.clone(),
            started: run.started_unix,
            duration_ms: run.started.elapsed().as_millis() as u64,
            result: o.verdict.result(),
            actions: o.plan.as_ref().map(|p| p.views()).unwrap_or_default(),
            error: o.error.clone(),
            failures: 0,
        };
        run.state.record(attempt, results);
        // After a full success the host holds exactly the commit's stacks (the others were
        // removed): the state forgets the rest, so `/status` does not list them forever.
        if let (Verdict::Applied | Verdict::Noop, Some(desired)) = (o.verdict, &o.desired) {
            run.state.retain_stacks(|k| desired.contains_key(k));
        }
        run.state.save(&self.cfg.state_dir)
    }
}

/// What one reconcile carries from its start to the record it leaves.
struct Attempting {
    started: Instant,
    started_unix: i64,
    /// `inputs_hash` of the commit and the secrets: equal inputs that failed are not retried.
    inputs: String,
    state: State,
    mode: Mode,
}

/// After a failure, the same inputs wait: bad input forever (it cannot fix itself), a failed
/// effect with a backoff of 1, 2, 4 … 60 minutes (dockerd may come back).
fn should_wait(prev: &Attempt, now: i64) -> bool {
    match prev.result {
        ReconcileResult::Invalid => true,
        ReconcileResult::Failed => {
            let backoff = 60i64
                .saturating_mul(1 << prev.failures.saturating_sub(1).min(6))
                .min(3600);
            now < prev.started + backoff
        }
        _ => false,
    }
}

/// A hash of everything a reconcile reads: the commit and the secrets files' bytes.
pub fn inputs_hash(sha: &str, secrets_dir: &Path) -> String {
    let mut h = Sha256::new();
    h.update(sha.as_bytes());
    let mut files: Vec<_> = std::fs::read_dir(secrets_dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        if f.extension().is_some_and(|e| e == "env") {
            h.update(f.to_string_lossy().as_bytes());
            h.update(std::fs::read(&f).unwrap_or_default());
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// Writes each stack's folder under `bind_root/<stack>` so relative bind mounts have a stable
/// host path; a folder is rewritten only when its content changed, by swapping in a new copy.
fn materialise_stacks(snap: &Snapshot, spec: &HostSpec, bind_root: &Path) -> anyhow::Result<()> {
    for name in spec.stacks.keys() {
        let prefix = format!("compose/{name}");
        let Some(id) = snap.content_id(&prefix) else {
            continue;
        };
        let dest = bind_root.join(name);
        let marker = dest.join(".gitmoor-content");
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == id) {
            continue;
        }
        let tmp = bind_root.join(format!(".{name}.new"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        snap.write_subtree(&prefix, &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::write(tmp.join(".gitmoor-content"), &id)?;
        let old = bind_root.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&old);
        if dest.exists() {
            std::fs::rename(&dest, &old)?;
        }
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("cannot replace {}", dest.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// The first 10 characters of a sha (whole characters, whatever the string holds).
pub fn short(sha: &str) -> &str {
    match sha.char_indices().nth(10) {
        Some((i, _)) => &sha[..i],
        None => sha,
    }
}
