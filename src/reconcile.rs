//! One reconcile, the loop body: fetch → spec → observe → plan → apply → record.
//!
//! It is level-triggered: it never learns why it runs (a poll, a webhook, a secret edit), only
//! compares the branch head with the host, so running it twice is harmless. Bad input fails
//! before the first effect; the same failing inputs are not tried again until they change.

use crate::apply::docker::DockerExecutor;
use crate::apply::execute::{execute_with, ApplyInputs, ApplyOptions, ApplyReport};
use crate::config::Config;
use crate::observe::docker::observe;
use crate::observe::for_plan::Listing;
use crate::observe::Observed;
use crate::plan::{plan, Plan, PlanContext, UnitId};
use crate::redact::{Redactor, StackRedactors};
use crate::source::git::{CommitInfo, GitError, GitSource, RepoAuth};
use crate::source::snapshot::Snapshot;
use crate::spec::error::Findings;
use crate::spec::load::{load_host_spec_with_profiles, LoadOptions};
use crate::spec::model::HostSpec;
use crate::state::{Attempt, CommitRef, InProgress, Phase, ReconcileResult, State};
pub use crate::status::desired::{desired_services, DesiredService};
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span, warn, Instrument};

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
    /// Every unit the commit describes (stacks, sites, the firewall), when its spec could be
    /// read: after a full success, the state forgets the others.
    pub desired_units: Option<BTreeSet<UnitId>>,
    /// The host as it was left: observed again after an apply, or the observation the plan was
    /// made from when nothing was applied. None when the reconcile stopped before observing.
    pub observed: Option<Observed>,
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
        crate::state::create_private_dir(&cfg.state_dir)
            .with_context(|| format!("cannot create state_dir {}", cfg.state_dir.display()))?;
        let lock_path = cfg.state_dir.join("lock");
        let lock = lock_file(&lock_path)
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
            allow_insecure_transport: cfg.allow_insecure_transport,
        };
        let (url, cache) = (cfg.repo.clone(), cfg.repo_cache_dir());
        let cache_lock = cfg.state_dir.join("repo.lock");
        // The Git cache and dockerd are opened side by side: dockerd takes a few milliseconds to
        // answer the version it speaks, about what opening the cache takes.
        let source = tokio::task::spawn_blocking(move || {
            let _held = CacheLock::take(&cache_lock)?;
            GitSource::open(&url, auth, &cache).map_err(anyhow::Error::from)
        });
        let (source, exec) =
            tokio::join!(source, DockerExecutor::connect(cfg.docker_host.as_deref()));
        let source = source??;
        let exec = exec?.with_build_timeout(Duration::from_secs(cfg.build_timeout_secs));
        debug!("git cache opened, dockerd connected");
        Ok(Reconciler {
            cfg,
            source: Arc::new(Mutex::new(source)),
            exec,
            _lock: lock,
        })
    }

    /// The lock on the Git cache (`state_dir/repo.lock`). `gitmoor plan` runs beside the daemon
    /// without the state lock, but it fetches into the same cache: the two take turns here, so
    /// neither reads a half-written ref or pack.
    fn cache_lock(&self) -> std::path::PathBuf {
        self.cfg.state_dir.join("repo.lock")
    }

    /// Fetches and returns the branch head.
    pub async fn fetch(&self) -> anyhow::Result<CommitInfo> {
        let src = self.source.clone();
        let branch = self.cfg.branch.clone();
        let lock = self.cache_lock();
        let head = tokio::task::spawn_blocking(move || {
            let _held = CacheLock::take(&lock)?;
            let g = src
                .lock()
                .map_err(|_| anyhow::anyhow!("git source lock poisoned"))?;
            g.fetch(&branch).map_err(anyhow::Error::from)
        })
        .await??;
        Ok(head)
    }

    /// The commit's files within the configured read budgets. The outer error is the cache's;
    /// the inner one, a commit that cannot be used (a bad name, a file over a budget): bad input,
    /// recorded like a spec error.
    async fn snapshot(&self, sha: &str) -> anyhow::Result<Result<Snapshot, GitError>> {
        let src = self.source.clone();
        let sha = sha.to_string();
        let limits = self.cfg.read_limits();
        let lock = self.cache_lock();
        tokio::task::spawn_blocking(move || {
            let _held = CacheLock::take(&lock)?;
            let g = src
                .lock()
                .map_err(|_| anyhow::anyhow!("git source lock poisoned"))?;
            bad_commit_apart(g.snapshot_with(&sha, limits))
        })
        .await?
    }

    /// Reads the deferred files a spec read asked for (a build context or an `env_file` outside
    /// `compose/`), within the same budget; errors as [`Reconciler::snapshot`].
    async fn fill(
        &self,
        mut snap: Snapshot,
        sha: &str,
        paths: Vec<String>,
    ) -> anyhow::Result<Result<Snapshot, GitError>> {
        let src = self.source.clone();
        let sha = sha.to_string();
        let lock = self.cache_lock();
        tokio::task::spawn_blocking(move || {
            let _held = CacheLock::take(&lock)?;
            let g = src
                .lock()
                .map_err(|_| anyhow::anyhow!("git source lock poisoned"))?;
            bad_commit_apart(g.fill(&mut snap, &sha, &paths).map(|_| snap))
        })
        .await?
    }

    /// Fetch, then plan (and in `Mode::Apply` apply) the branch head. `retry` tries inputs that
    /// failed before (the CLI's `apply` does; the daemon does not).
    pub async fn reconcile(&self, mode: Mode, retry: bool) -> anyhow::Result<Outcome> {
        // An apply has dockerd list gitmoor's objects while the remote is fetched: the listing is
        // the longest step of a no-op, and it does not depend on the commit (dropped unused if
        // the fetch fails). Only an apply: it holds the state lock, so no other gitmoor changes
        // the host between this listing and the plan. A plan holds none: it lists once it has
        // read the state, as before, which keeps the window for a daemon's apply short (a fetch
        // waits on the daemon's Git lock, and would widen it).
        let listing = (mode == Mode::Apply).then(|| Listing::start(&self.exec, &self.cfg.instance));
        let head = self.fetch().await?;
        debug!("fetched");
        self.reconcile_listed(head, mode, retry, listing).await
    }

    /// The rest of a reconcile, for a caller that fetched itself (the daemon, which reports a
    /// fetch failure apart from the reconcile that follows).
    pub async fn reconcile_fetched(
        &self,
        head: CommitInfo,
        mode: Mode,
        retry: bool,
    ) -> anyhow::Result<Outcome> {
        self.reconcile_listed(head, mode, retry, None).await
    }

    /// [`Reconciler::reconcile_fetched`] with the listing of gitmoor's objects already started
    /// (`None`: started here, once the commit is known not to be skipped).
    async fn reconcile_listed(
        &self,
        head: CommitInfo,
        mode: Mode,
        retry: bool,
        listing: Option<Listing>,
    ) -> anyhow::Result<Outcome> {
        let span = info_span!("reconcile", commit = %short(&head.sha));
        let outcome = self
            .reconcile_commit(head, mode, retry, listing)
            .instrument(span)
            .await;
        let mut outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                if mode == Mode::Apply {
                    // An error that is not the commit's fault (dockerd away, a Git read): the
                    // process did not die, so the mark must not make the next try look like a
                    // crash.
                    self.clear_mark();
                }
                return Err(e);
            }
        };
        if let Some(observed) = outcome.observed.as_mut() {
            let desired: Option<BTreeSet<String>> = outcome
                .desired
                .as_ref()
                .map(|d| d.keys().cloned().collect());
            self.retain_own(observed, desired.as_ref());
        }
        Ok(outcome)
    }

    /// `/status` shows this config's objects: another repo's (same instance) are not
    /// "containers the repo no longer has". `desired`: the commit's stacks, when known (an
    /// adopted stack is ours only while the commit declares it).
    pub fn retain_own(&self, observed: &mut Observed, desired: Option<&BTreeSet<String>>) {
        let recorded = State::load(&self.cfg.state_dir)
            .map(|s| s.stacks().into_keys().collect())
            .unwrap_or_default();
        crate::plan::retain_own(
            observed,
            &crate::labels::owner_label(&self.cfg.repo, &self.cfg.branch),
            &recorded,
            &self.cfg.adopt,
            desired,
        );
    }

    /// This config's objects on the host, for `/status` between reconciles.
    pub async fn observe_own(&self) -> anyhow::Result<Observed> {
        let mut observed = observe(&self.exec.docker, &self.cfg.instance).await?;
        self.retain_own(&mut observed, None);
        Ok(observed)
    }

    fn clear_mark(&self) {
        if let Ok(mut state) = State::load(&self.cfg.state_dir) {
            if state.in_progress.take().is_some() {
                if let Err(e) = state.save(&self.cfg.state_dir) {
                    warn!(error = %format!("{e:#}"), "cannot clear the reconcile mark");
                }
            }
        }
    }

    async fn reconcile_commit(
        &self,
        head: CommitInfo,
        mode: Mode,
        retry: bool,
        listing: Option<Listing>,
    ) -> anyhow::Result<Outcome> {
        let state = match mode {
            // Only the writer may move a corrupt state aside; a plan reads it as it is.
            Mode::Apply => {
                let (state, warning) = State::load_or_set_aside(&self.cfg.state_dir)?;
                if let Some(w) = warning {
                    warn!("{w}");
                }
                state
            }
            Mode::Plan => State::load(&self.cfg.state_dir).unwrap_or_default(),
        };
        let mut run = Attempting {
            started: Instant::now(),
            started_unix: chrono::Utc::now().timestamp(),
            inputs: inputs_hash(
                &head.sha,
                &self.cfg.secrets_dir,
                &self.cfg.reading_inputs(),
                &crate::hashkey::HashKey::load_or_create(&self.cfg.state_dir)?,
            ),
            state,
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
            desired_units: None,
            observed: None,
        };

        debug!("state and inputs read");
        if mode == Mode::Apply {
            self.close_interrupted(&mut run)?;
        }
        if mode == Mode::Apply && !retry {
            if let Some(prev) = &run.state.last_attempt {
                if prev.inputs == run.inputs && should_wait(prev, run.started_unix) {
                    outcome.verdict = Verdict::Skipped;
                    outcome.error = prev.error.clone();
                    // An invalid head waits for a push, but certificates do not: the last good
                    // commit's are still renewed when due.
                    if prev.result == ReconcileResult::Invalid {
                        let before = (
                            run.state.cert_failures.clone(),
                            run.state.certs_loaded.clone(),
                        );
                        // Added to the error, as an invalid reconcile adds them: a renewal
                        // that fails every poll must show on /status, not only in the log.
                        let problems = self.renew_last_good(&mut run).await;
                        if !problems.is_empty() {
                            let mut error = outcome.error.take().unwrap_or_default();
                            for p in problems {
                                if !error.is_empty() {
                                    error.push('\n');
                                }
                                error.push_str(&p);
                            }
                            outcome.error = Some(error);
                        }
                        if before
                            != (
                                run.state.cert_failures.clone(),
                                run.state.certs_loaded.clone(),
                            )
                        {
                            run.state.save(&self.cfg.state_dir)?;
                        }
                    }
                    return Ok(outcome);
                }
            }
        }

        let listing = listing.unwrap_or_else(|| Listing::start(&self.exec, &self.cfg.instance));
        // Reading a commit is where a hostile one costs memory and time: mark it first, so a
        // process killed on the way leaves a trace (see `close_interrupted`). Inputs that were
        // read to a good end last time need no mark (reading is a function of them), which keeps
        // the poll of an unchanged commit free of a state write.
        let read_fine_before = run.state.last_attempt.as_ref().is_some_and(|a| {
            a.inputs == run.inputs
                && matches!(a.result, ReconcileResult::Success | ReconcileResult::Noop)
        });
        if mode == Mode::Apply && !read_fine_before {
            self.mark(&mut run, &head, Phase::Reading)?;
        }
        let opts = LoadOptions {
            secrets_dir: Some(self.cfg.secrets_dir.clone()),
            bind_root: self.cfg.bind_root(),
            data_dir: self.cfg.data_dir(),
            limits: self.cfg.limits,
            policy: self.cfg.policy.clone(),
            home_dir: crate::home::home_dir(self.cfg.home_dir.as_deref()),
            literal_secrets: self.cfg.literal_secrets,
        };
        let mut snap = match self.snapshot(&head.sha).await? {
            Ok(s) => s,
            Err(e) => return self.invalid(&mut run, outcome, e.to_string()).await,
        };
        // Files outside compose/, nginx/ and ufw/ are read only when the spec asks for them:
        // read, fill what it asked for, read again.
        let mut fills = 0;
        let (spec, findings) = loop {
            let read = load_host_spec_with_profiles(&snap, &opts, &self.cfg.profiles);
            let wanted = snap.take_wanted();
            if wanted.is_empty() {
                break read;
            }
            fills += 1;
            if fills > 3 {
                let msg = format!(
                    "the spec still asks for unread files after 3 reads: {}",
                    wanted.join(", ")
                );
                return self.invalid(&mut run, outcome, msg).await;
            }
            snap = match self.fill(snap, &head.sha, wanted).await? {
                Ok(s) => s,
                Err(e) => return self.invalid(&mut run, outcome, e.to_string()).await,
            };
        };
        debug!("spec read");
        let mut findings = findings;
        if let Some(spec) = &spec {
            // Ports published past the firewall: refused or warned, as the config says.
            let (errors, warnings) = crate::plan::docker_guard::docker_guard_findings(
                spec,
                self.cfg.firewall.docker_guard,
            );
            findings.errors.extend(errors);
            findings.warnings.extend(warnings);
        }
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
                return self.invalid(&mut run, outcome, msg).await;
            }
        };

        outcome.desired = Some(desired_services(&spec));
        outcome.desired_units = Some(desired_units(&spec));
        let auth =
            crate::apply::docker::registry::load_optional(self.cfg.registry_auth.as_deref())?;
        let mut observed = self.observe_for(listing, &spec, auth.as_ref()).await?;
        debug!("host observed");
        let plan = match self
            .plan_for(&spec, &mut observed, &head.sha, &run.state)
            .await?
        {
            Ok(p) => p,
            Err(e) => {
                outcome.observed = Some(observed);
                return self.invalid(&mut run, outcome, e.to_string()).await;
            }
        };
        debug!("planned");
        outcome.plan = Some(plan.clone());
        if mode == Mode::Plan {
            outcome.observed = Some(observed);
            return Ok(outcome);
        }
        if plan.is_empty() {
            outcome.verdict = Verdict::Noop;
            outcome.observed = Some(observed);
            let results = spec
                .stacks
                .keys()
                .map(|k| (UnitId::Stack(k.clone()), Ok(())))
                .collect();
            self.record(&mut run, &outcome, &results)?;
            debug!("recorded");
            return Ok(outcome);
        }

        for line in plan.render_text().lines() {
            info!("plan: {line}");
        }
        self.mark(&mut run, &head, Phase::Applying)?;
        let content = self.cfg.bind_root();
        for dir in crate::apply::content::write_copies(&snap, &spec, &content)? {
            info!(copy = %dir.display(), "repo files copied for their containers");
        }
        for dir in crate::apply::content::make_data_folders(&spec, &self.cfg.data_dir())? {
            info!(folder = %dir.display(), "data folder made");
        }
        let apply_opts = ApplyOptions {
            health_timeout: Duration::from_secs(self.cfg.health_timeout_secs),
            stop_grace_secs: 10,
        };
        let redact = stack_redactors(&spec);
        let repo = crate::labels::owner_label(&self.cfg.repo, &self.cfg.branch);
        // Nginx is driven only when the plan changes a site: a host without it deploys stacks.
        let has_sites = plan
            .units
            .iter()
            .any(|u| matches!(u.work, crate::plan::Work::Site(_)));
        let nginx = has_sites.then(|| {
            // nginx's messages can quote any file a site includes: every stack's host secrets
            // are taken out of them.
            let all = Redactor::new(
                spec.stacks
                    .values()
                    .flat_map(|st| st.host_secrets.iter().map(|v| v.expose())),
            );
            crate::apply::nginx::NginxHost::new(&self.cfg.nginx, all).map_err(|e| {
                format!(
                    "cannot drive nginx: {e}; install it, or set nginx.binary in gitmoor's config"
                )
            })
        });
        let has_firewall = plan
            .units
            .iter()
            .any(|u| matches!(u.work, crate::plan::Work::Firewall(_)));
        let ufw = has_firewall.then(|| {
            crate::apply::ufw::UfwHost::new(&self.cfg.firewall, Redactor::default()).map_err(|e| {
                format!(
                    "cannot drive ufw: {e}; install it, or set firewall.binary in gitmoor's config"
                )
            })
        });
        let apply_inputs = ApplyInputs {
            instance: &self.cfg.instance,
            repo: &repo,
            nginx,
            ufw,
            letsencrypt: &self.cfg.letsencrypt,
            snapshot: &snap,
            auth: auth.as_ref(),
            redact: &redact,
        };
        let report = execute_with(&plan, &self.exec, &apply_opts, &apply_inputs).await;
        // A reload loads every certificate as it is on disk now: noted, so a later renewal
        // done outside gitmoor (certbot.timer) is seen as "not loaded" and reloaded.
        // Only lineages a finished TLS vhost on disk serves: a held or failed site's (its
        // ACME-only or previous vhost) is not loaded by nginx, and the renewal while the head
        // is invalid renews only what is recorded here.
        if matches!(&apply_inputs.nginx, Some(Ok(n)) if n.reloaded()) {
            let ends = crate::observe::for_plan::certificates(&self.cfg, &spec).1;
            // Sites not observed: the record stays as it was (an empty one would make every
            // later plan see certificates nginx never loaded, and reload on each reconcile).
            if let crate::observe::Seen::Observed(on_disk) =
                crate::observe::nginx::observe_sites(&self.cfg.nginx.sites_dir)
            {
                run.state.certs_loaded = crate::plan::site::served_lineages(
                    &spec,
                    &self.site_render_context(),
                    &on_disk,
                    &ends,
                );
            }
        }
        // certbot's failures count per name against Let's Encrypt's limits: kept, so the next
        // plans hold a name that keeps failing (plan/cert_backoff.rs).
        let now = chrono::Utc::now().timestamp();
        for (site, failed) in &report.certbot_failed {
            let names = crate::plan::site::server_names(&spec, site);
            run.state.note_certbot(&names, *failed, now);
        }
        outcome.verdict = if report.is_ok() {
            Verdict::Applied
        } else {
            Verdict::Failed
        };
        outcome.error = report.first_error();
        // After the effects, failed or not: a copy any container mounts (one a failed apply
        // restored too, stopped ones included) is kept; the others would pile up with each
        // failing commit.
        match crate::apply::content::remove_unused(&self.exec.docker, &content).await {
            Ok(gone) if !gone.is_empty() => {
                info!(
                    count = gone.len(),
                    "removed the repo copies no container uses"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(error = %format!("{e:#}"), "cannot remove unused repo copies"),
        }
        let mut results: BTreeMap<UnitId, Result<(), String>> = report
            .units
            .iter()
            .map(|(u, o)| (u.clone(), o.error().map_or(Ok(()), |e| Err(e.to_string()))))
            .collect();
        for k in spec.stacks.keys() {
            results.entry(UnitId::Stack(k.clone())).or_insert(Ok(()));
        }
        outcome.report = Some(report);
        // What the apply left behind, for `/status`: three listing calls, once per apply.
        outcome.observed = match observe(&self.exec.docker, &self.cfg.instance).await {
            Ok(mut o) => {
                // The certificates as the apply left them (one may have just been obtained).
                (o.certs, o.cert_expiry) = crate::observe::for_plan::certificates(&self.cfg, &spec);
                // UFW as the firewall unit left it (read again only when there was one).
                o.firewall = if has_firewall {
                    crate::observe::for_plan::observe_firewall_host(&self.cfg).await
                } else {
                    std::mem::take(&mut observed.firewall)
                };
                Some(o)
            }
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

    /// The host as the plan needs it (observe/for_plan.rs).
    async fn observe_for(
        &self,
        listing: Listing,
        spec: &HostSpec,
        auth: Option<&crate::apply::docker::registry::RegistryAuth>,
    ) -> anyhow::Result<Observed> {
        crate::observe::for_plan::observe_for_plan(listing, &self.exec, &self.cfg, spec, auth).await
    }

    /// What rendering a site needs of gitmoor's config (no certificate facts, no backoff).
    fn site_render_context(&self) -> crate::plan::site::SiteContext {
        crate::plan::site::SiteContext {
            render: crate::spec::nginx::render::RenderHost {
                gitmoor_listen: self.cfg.listen,
                http_port: self.cfg.nginx.http_port,
                https_port: self.cfg.nginx.https_port,
                ipv6: self.cfg.nginx.ipv6,
            },
            acme_webroot: self.cfg.nginx.acme_webroot.clone(),
            letsencrypt_live: self.cfg.letsencrypt.config_dir.join("live"),
            now: chrono::Utc::now().timestamp(),
            ..crate::plan::site::SiteContext::default()
        }
    }

    /// Plans `spec` against `observed`; `saved` is this state_dir's state as on disk (its stacks'
    /// unlabelled objects, made before repo labels, are this config's). Containers gitmoor does
    /// not own matter only where the plan would create one: their names are looked up (one call)
    /// only then, and the plan made again with them. The outer error is Docker's; the inner one,
    /// a plan that cannot be done.
    async fn plan_for(
        &self,
        spec: &HostSpec,
        observed: &mut Observed,
        commit: &str,
        saved: &State,
    ) -> anyhow::Result<Result<Plan, crate::plan::PlanError>> {
        let ctx = PlanContext {
            commit: commit.to_string(),
            bind_root: self.cfg.bind_root(),
            instance: self.cfg.instance.clone(),
            repo: crate::labels::owner_label(&self.cfg.repo, &self.cfg.branch),
            recorded_stacks: saved.stacks().into_keys().collect(),
            recorded_sites: saved
                .units
                .keys()
                .filter_map(|k| match UnitId::from_key(k) {
                    Some(UnitId::Site(n)) => Some(n),
                    _ => None,
                })
                .collect(),
            adopt: self.cfg.adopt.clone(),
            sites: crate::plan::site::SiteContext {
                cert_failures: saved.cert_failures.clone(),
                certs_on_disk: observed.cert_expiry.clone(),
                certs_loaded: saved.certs_loaded.clone(),
                ..self.site_render_context()
            },
            firewall: crate::plan::FirewallContext {
                options: self.cfg.firewall.plan_options(),
                allow_ssh_lockout: self.cfg.firewall.allow_ssh_lockout,
            },
            hash_key: crate::hashkey::HashKey::load_or_create(&self.cfg.state_dir)?,
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

    /// Saves the mark of a reconcile under way (`Mode::Apply` only).
    fn mark(&self, run: &mut Attempting, head: &CommitInfo, phase: Phase) -> anyhow::Result<()> {
        if run.mode != Mode::Apply {
            return Ok(());
        }
        run.state.in_progress = Some(InProgress {
            commit: commit_ref(head),
            inputs: run.inputs.clone(),
            started: run.started_unix,
            phase,
        });
        run.state.save(&self.cfg.state_dir)
    }

    /// A mark left by a reconcile that never recorded its end: the process died. It becomes an
    /// attempt of its own, so the usual rules apply to those inputs. Died while applying: they
    /// failed and are retried with backoff (the host may be half-changed). Died while reading:
    /// once may be the machine (a reboot, memory taken by another process, `kill -9`), so they
    /// failed and are retried once after the backoff; twice on the same inputs is the commit
    /// (a read that kills every process), and they wait as bad input until the commit, the
    /// secrets or gitmoor's config change.
    fn close_interrupted(&self, run: &mut Attempting) -> anyhow::Result<()> {
        let Some(ip) = run.state.in_progress.take() else {
            return Ok(());
        };
        let short_sha = short(&ip.commit.sha).to_string();
        let (result, error) = match ip.phase {
            Phase::Reading => {
                let deaths = match &run.state.died_reading {
                    Some((inputs, n)) if *inputs == ip.inputs => n + 1,
                    _ => 1,
                };
                run.state.died_reading = Some((ip.inputs.clone(), deaths));
                if deaths >= 2 {
                    (
                        ReconcileResult::Invalid,
                        format!(
                            "gitmoor stopped while reading commit {short_sha}, {deaths} times \
                             (killed, out of memory?); it is not tried again until the commit, the \
                             secrets or gitmoor's config change; check the commit's size and the \
                             limits in gitmoor's config"
                        ),
                    )
                } else {
                    (
                        ReconcileResult::Failed,
                        format!(
                            "gitmoor stopped while reading commit {short_sha} (killed, out of \
                             memory, or a reboot?); tried once more after a backoff, then held \
                             back if it happens again"
                        ),
                    )
                }
            }
            Phase::Applying => (
                ReconcileResult::Failed,
                format!(
                    "gitmoor stopped while applying commit {short_sha} (killed or rebooted); the \
                     host may be partly updated; retried with backoff"
                ),
            ),
        };
        warn!(commit = %short(&ip.commit.sha), "{error}");
        let attempt = Attempt {
            commit: ip.commit,
            inputs: ip.inputs,
            started: ip.started,
            duration_ms: 0,
            result,
            actions: Vec::new(),
            error: Some(error),
            failures: 0,
        };
        run.state.record(attempt, &BTreeMap::new());
        run.state.save(&self.cfg.state_dir)
    }

    /// Ends a reconcile on bad input: nothing on the host changed. In `Mode::Apply` the attempt
    /// is recorded, so the same inputs are not tried again until they change.
    async fn invalid(
        &self,
        run: &mut Attempting,
        mut outcome: Outcome,
        error: String,
    ) -> anyhow::Result<Outcome> {
        outcome.verdict = Verdict::Invalid;
        let mut error = error;
        for problem in self.renew_last_good(run).await {
            error.push('\n');
            error.push_str(&problem);
        }
        outcome.error = Some(error);
        self.record(run, &outcome, &BTreeMap::new())?;
        Ok(outcome)
    }

    /// While the head is invalid the plan, which renews certificates, is never made: the last
    /// good commit's certificates that are due are renewed here (`Mode::Apply` only), and nginx
    /// reloaded (apply/site.rs `renew_last_good`). The state is updated, not saved.
    async fn renew_last_good(&self, run: &mut Attempting) -> Vec<String> {
        if run.mode != Mode::Apply || run.state.certs_loaded.is_empty() {
            return Vec::new();
        }
        let problems = crate::apply::renew_last_good(
            &self.cfg.nginx,
            &self.cfg.letsencrypt,
            secrets_dir_redactor(&self.cfg.secrets_dir),
            &mut run.state.cert_failures,
            &mut run.state.certs_loaded,
            chrono::Utc::now().timestamp(),
        )
        .await;
        for p in &problems {
            warn!(error = %p, "certificate renewal while the branch head is invalid");
        }
        problems
    }

    /// Writes the attempt and each stack's result to the state file (`Mode::Apply` only: a plan
    /// changes nothing and leaves no trace).
    fn record(
        &self,
        run: &mut Attempting,
        o: &Outcome,
        results: &BTreeMap<UnitId, Result<(), String>>,
    ) -> anyhow::Result<()> {
        if run.mode != Mode::Apply {
            return Ok(());
        }
        let attempt = Attempt {
            commit: commit_ref(&o.commit),
            inputs: run.inputs.clone(),
            started: run.started_unix,
            duration_ms: run.started.elapsed().as_millis() as u64,
            result: o.verdict.result(),
            actions: o.plan.as_ref().map(|p| p.views()).unwrap_or_default(),
            error: o.error.clone(),
            failures: 0,
        };
        // This reconcile read its inputs to the end: no death to remember.
        run.state.died_reading = None;
        run.state.record(attempt, results);
        // After a full success the host holds exactly the commit's stacks (the others were
        // removed): the state forgets the rest, so `/status` does not list them forever.
        if let (Verdict::Applied | Verdict::Noop, Some(desired)) = (o.verdict, &o.desired_units) {
            run.state.retain_units(|u| desired.contains(u));
        }
        run.state.save(&self.cfg.state_dir)
    }
}

/// The units a spec describes.
fn desired_units(spec: &HostSpec) -> BTreeSet<UnitId> {
    spec.stacks
        .keys()
        .cloned()
        .map(UnitId::Stack)
        .chain(spec.sites.keys().cloned().map(UnitId::Site))
        .chain(spec.firewall.as_ref().map(|_| UnitId::Firewall))
        .collect()
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

fn commit_ref(c: &CommitInfo) -> CommitRef {
    CommitRef {
        sha: c.sha.clone(),
        subject: c.subject.clone(),
        author: c.author.clone(),
        time: c.time,
    }
}

/// The state dir's lock file, private like everything in the state dir.
fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// A held lock on the Git cache; released when dropped (the file closes).
struct CacheLock {
    _file: std::fs::File,
}

impl CacheLock {
    /// Waits for the lock: a fetch of the other process is short, and waiting beats failing.
    fn take(path: &Path) -> anyhow::Result<CacheLock> {
        let f = lock_file(path).with_context(|| format!("cannot open {}", path.display()))?;
        f.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(CacheLock { _file: f })
    }
}

/// How deep `inputs_hash` looks into the secrets dir (`<stack>/env/x.env` is 3 deep).
const SECRETS_HASH_DEPTH: usize = 8;
/// Bytes of one secrets-dir file hashed by content; a bigger one (no secret is that big) counts
/// by its size and modification time, so a stray dump there cannot make every poll read it.
const SECRETS_HASH_FILE_BYTES: u64 = 1 << 20;

/// A hash of everything a reconcile reads: the commit, the config keys that decide how it is
/// read (`config`: limits, policy, profiles, ownership), and every file of the secrets dir (the
/// `<stack>.env` files, and the files `secrets:` and `env_file:` read there), by path and bytes.
/// Fixing any of them (raising a limit an error names, too) makes inputs that failed new inputs,
/// worth a try. Keyed with the host's hash key: `state.json` keeps it, and a plain hash of the
/// secrets would be a guessing oracle.
pub fn inputs_hash(
    sha: &str,
    secrets_dir: &Path,
    config: &str,
    key: &crate::hashkey::HashKey,
) -> String {
    let mut h = Sha256::new();
    h.update(sha.as_bytes());
    h.update([0]);
    h.update(config.as_bytes());
    h.update([0]);
    hash_dir(&mut h, secrets_dir, SECRETS_HASH_DEPTH);
    hex::encode(&key.mac(&[b"gitmoor inputs", &h.finalize()])[..16])
}

/// Paths and bytes of the files under `dir`, in sorted order, to a bounded depth. A symlink to
/// a file is followed (admins link secret files); a symlink to a folder is not entered, so a
/// link to `/` or a loop costs nothing.
fn hash_dir(h: &mut Sha256, dir: &Path, depth: usize) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for p in entries {
        let Ok(link) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if link.is_dir() {
            if depth > 0 {
                hash_dir(h, &p, depth - 1);
            }
            continue;
        }
        // Follows a link to see what it names; only regular files count.
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        h.update(p.to_string_lossy().as_bytes());
        h.update([0]);
        if meta.len() <= SECRETS_HASH_FILE_BYTES {
            h.update(std::fs::read(&p).unwrap_or_default());
        } else {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            h.update(format!("{} bytes, modified {mtime}", meta.len()).as_bytes());
        }
        h.update([0]);
    }
}

/// A source result with a bad commit kept as the inner error, anything else as the outer one.
fn bad_commit_apart(r: Result<Snapshot, GitError>) -> anyhow::Result<Result<Snapshot, GitError>> {
    match r {
        Ok(s) => Ok(Ok(s)),
        Err(e) if e.is_bad_commit() => Ok(Err(e)),
        Err(e) => Err(e.into()),
    }
}

/// Without a spec (the head is invalid), the values of every `<secrets_dir>/<stack>.env`: what
/// nginx's messages could quote of the last good commit's stacks (a file that cannot be read
/// adds nothing; the spec reader reports it).
fn secrets_dir_redactor(dir: &Path) -> Redactor {
    let mut values = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(stack) = name.to_str().and_then(|n| n.strip_suffix(".env")) else {
            continue;
        };
        if let Ok(Some(file)) = crate::spec::host_secrets::load_stack_secrets(dir, stack) {
            values.extend(file.vars.into_values());
        }
    }
    Redactor::new(values.iter().map(|v| v.expose()))
}

/// Each stack's redactor, from the values of its host secrets.
fn stack_redactors(spec: &HostSpec) -> StackRedactors {
    spec.stacks
        .iter()
        .map(|(name, st)| {
            let values = st.host_secrets.iter().map(|v| v.expose());
            (name.clone(), Redactor::new(values))
        })
        .collect()
}

/// The first 10 characters of a sha (whole characters, whatever the string holds).
pub fn short(sha: &str) -> &str {
    match sha.char_indices().nth(10) {
        Some((i, _)) => &sha[..i],
        None => sha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_hash_sees_every_secrets_file_and_no_loop() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::hashkey::HashKey::from_bytes([3; 32]);
        let secrets = dir.path();
        std::fs::create_dir_all(secrets.join("app/env")).unwrap();
        std::fs::write(secrets.join("app.env"), "A=1\n").unwrap();
        std::fs::write(secrets.join("app/env/db.env"), "P=x\n").unwrap();
        // A loop and a link to the root: neither is entered.
        std::os::unix::fs::symlink(secrets, secrets.join("app/loop")).unwrap();
        std::os::unix::fs::symlink("/", secrets.join("root")).unwrap();
        let first = inputs_hash("sha", secrets, "cfg", &key);
        assert_eq!(first, inputs_hash("sha", secrets, "cfg", &key));
        std::fs::write(secrets.join("app/env/db.env"), "P=y\n").unwrap();
        let edited = inputs_hash("sha", secrets, "cfg", &key);
        assert_ne!(first, edited, "a file three deep counts");
        assert_ne!(
            edited,
            inputs_hash("sha", secrets, "cfg2", &key),
            "the config counts"
        );
        assert_ne!(
            edited,
            inputs_hash(
                "sha",
                secrets,
                "cfg",
                &crate::hashkey::HashKey::from_bytes([4; 32])
            ),
            "keyed"
        );
    }
}
