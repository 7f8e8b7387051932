//! Changes to the host's UFW: the steps of a `FirewallPlan` run in order with the real `ufw`
//! (argv only, through `process`), and the Docker guard's `DOCKER-USER` block kept in
//! `after.rules`/`after6.rules`.
//!
//! Why the SSH lockout guard runs again here: the plan was made from an observation that may
//! be minutes old (a build ran in between), and an admin may have connected from a new address
//! since. So before the first step the firewall and the SSH sessions are looked at again, the
//! plan is made again from that, and nothing runs unless it is the same plan and it keeps SSH
//! open (unless the config's `firewall.allow_ssh_lockout` says otherwise).
//!
//! A failed step stops the run: the error names the step, quotes ufw (redacted) and lists what
//! was already done, so a person can see the state the firewall was left in. The order of the
//! plan (adds first, deletes after) means a stop half-way leaves more open than asked for,
//! never less.

use crate::config::firewall::{DockerGuard, FirewallConfig};
use crate::observe::ufw::{
    docker_user_chain, iptables_list, observe_firewall, ssh_peers, ssh_ports, ufw_call, ufw_program,
};
use crate::observe::ufw_parse::{
    forward_starts_with_docker_user, parse_default_file, parse_status_enabled, ObservedFirewall,
};
use crate::observe::Seen;
use crate::plan::docker_guard::{
    block_in, block_rules_in_chain, chain_block, docker_user_block, foreign_rules_in_chain,
    splice_block, ChainBlock, GuardStep,
};
use crate::plan::firewall::{lockout_guard, plan_firewall, FirewallPlan};
use crate::process::{resolve_program, Process, ProcessError};
use crate::redact::Redactor;
use crate::spec::ufw::FirewallSpec;
use crate::state::State;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tracing::{debug, info, warn};

/// Why the firewall was not (fully) changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    #[error("firewall: UFW could not be read, so nothing was changed: {0}")]
    NotObserved(String),
    #[error(
        "firewall: UFW changed since the plan was made (the plan now is: {now}), so nothing was \
         changed; the next reconcile plans again"
    )]
    Stale { now: String },
    /// The lockout guard's message (it names the override).
    #[error("firewall: {0}")]
    Lockout(String),
    #[error(
        "firewall: step {number} of {total} failed (ufw {step}, because {reason}): {message}; \
         done before it: {}",
        if done.is_empty() { "nothing".to_string() } else { done.join("; ") }
    )]
    Step {
        number: usize,
        total: usize,
        step: String,
        reason: String,
        message: String,
        done: Vec<String>,
    },
    #[error("firewall: Docker guard: {message}; done before it: {}",
        if done.is_empty() { "nothing".to_string() } else { done.join("; ") })]
    DockerGuard { message: String, done: Vec<String> },
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Each ufw call and file change, in order, as `ufw allow ...` lines.
    pub done: Vec<String>,
    /// What a person should know (the guard was overridden).
    pub notes: Vec<String>,
}

/// What the Docker guard's repair did, and what a person should know (rules of others before
/// gitmoor's block, an older block left as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repair {
    pub done: Vec<String>,
    pub notes: Vec<String>,
}

/// The longest a read of the repair may take (`ufw status`, `iptables -S`, the jump): it runs
/// before every fetch, and a hung tool must not hold the daemon for the config's timeout.
/// `ufw reload` keeps the config's: killed half-way it would leave the firewall half-loaded.
const REPAIR_READ_SECS: u64 = 10;

/// The host's UFW, as the config describes it.
#[derive(Debug, Clone)]
pub struct UfwHost {
    program: PathBuf,
    cfg: FirewallConfig,
    redact: Redactor,
}

impl UfwHost {
    /// Fails when there is no ufw to run (the error says which setting fixes it).
    pub fn new(cfg: &FirewallConfig, redact: Redactor) -> Result<UfwHost, ProcessError> {
        Ok(UfwHost {
            program: ufw_program(cfg)?,
            cfg: cfg.clone(),
            redact,
        })
    }

    pub fn config(&self) -> &FirewallConfig {
        &self.cfg
    }

    pub async fn observe(&self) -> Seen<ObservedFirewall> {
        observe_firewall(&self.cfg, &self.redact).await
    }

    /// The lockout guard on `plan` with the SSH sessions open now. Ok with a note when the
    /// config overrides it. The SSH ports not known (sshd -T failed, no `firewall.ssh_port`):
    /// not observed, as the plan says it; never a port assumed.
    pub async fn check_lockout(&self, plan: &FirewallPlan) -> Result<Vec<String>, FirewallError> {
        let mut notes = Vec::new();
        let ports = ssh_ports(&self.cfg, &self.redact)
            .await
            .map_err(FirewallError::NotObserved)?;
        if self.cfg.allow_ssh_lockout {
            notes.push(
                "the SSH lockout guard is off (firewall.allow_ssh_lockout: true in gitmoor's config)"
                    .into(),
            );
            return Ok(notes);
        }
        let peers = ssh_peers(&ports).map_err(FirewallError::Lockout)?;
        lockout_guard(plan, &ports, &peers).map_err(FirewallError::Lockout)?;
        Ok(notes)
    }

    /// Brings UFW to `spec` by running `plan`'s steps, after checking on a fresh observation
    /// that the plan still holds and keeps SSH open; then keeps the Docker guard's block as the
    /// config says.
    pub async fn apply(
        &self,
        spec: &FirewallSpec,
        plan: &FirewallPlan,
    ) -> Result<Applied, FirewallError> {
        let fresh = match self.observe().await {
            Seen::Observed(f) => f,
            Seen::NotObserved(why) => return Err(FirewallError::NotObserved(why)),
        };
        let now = plan_firewall(spec, &fresh, self.cfg.plan_options());
        // The guard's step may differ in its reasons only (a chain flushed meanwhile): what
        // counts is whether the block is to be kept or taken out.
        let guard_of = |p: &FirewallPlan| p.docker_guard.as_ref().map(|g| g.enforce);
        if now.steps != plan.steps || guard_of(&now).is_some() && guard_of(&now) != guard_of(plan) {
            let shown: Vec<String> = now.steps.iter().map(|s| s.argv.join(" ")).collect();
            let err = FirewallError::Stale {
                now: if shown.is_empty() {
                    "nothing to do".into()
                } else {
                    shown.join("; ")
                },
            };
            return Err(self.repair_after(err).await);
        }
        // Nothing to run: nothing the guard could refuse (the Docker guard's block aside,
        // which does not touch SSH).
        let notes = if now.steps.is_empty() {
            Vec::new()
        } else {
            match self.check_lockout(&now).await {
                Ok(n) => n,
                Err(e) => return Err(self.repair_after(e).await),
            }
        };
        let mut applied = Applied {
            notes,
            ..Applied::default()
        };
        let total = now.steps.len();
        for (i, step) in now.steps.iter().enumerate() {
            let shown = step.argv.join(" ");
            if let Err(e) = ufw_call(&self.program, &self.cfg, &step.argv)
                .run(&self.redact)
                .await
            {
                let err = FirewallError::Step {
                    number: i + 1,
                    total,
                    step: shown,
                    reason: step.reason.clone(),
                    message: e.to_string(),
                    done: applied.done,
                };
                return Err(self.repair_after(err).await);
            }
            applied.done.push(format!("ufw {shown}"));
        }
        let Some(guard) = &now.docker_guard else {
            return Ok(applied);
        };
        match self.sync_docker_guard(spec, guard).await {
            Ok(done) => applied.done.extend(done),
            Err(message) => {
                return Err(FirewallError::DockerGuard {
                    message,
                    done: applied.done,
                })
            }
        }
        Ok(applied)
    }

    /// Keeps the Docker guard in force when the rules part of the unit did not run (refused by
    /// the SSH lockout guard, UFW changed meanwhile, a failed ufw call): the guard's repair
    /// does not wait for a full successful reconcile. Returns `err` with what the repair did,
    /// or why it failed, said after it.
    async fn repair_after(&self, err: FirewallError) -> FirewallError {
        if self.cfg.docker_guard != DockerGuard::Enforce {
            return err;
        }
        let said = match self.repair_docker_guard().await {
            Ok(r) if r.done.is_empty() && r.notes.is_empty() => return err,
            Ok(r) if r.done.is_empty() => format!("the Docker guard: {}", r.notes.join("; ")),
            Ok(r) => format!(
                "the Docker guard's DOCKER-USER rules, as UFW's files already had them, were put back in force: {}{}",
                r.done.join("; "),
                if r.notes.is_empty() { String::new() } else { format!(" ({})", r.notes.join("; ")) }
            ),
            Err(e) => format!("the Docker guard could not be put back in force: {e}"),
        };
        tracing::warn!("firewall: {said}");
        match err {
            FirewallError::Lockout(m) => FirewallError::Lockout(format!("{m} ({said})")),
            FirewallError::NotObserved(m) => FirewallError::NotObserved(format!("{m} ({said})")),
            FirewallError::Stale { now } => FirewallError::Stale {
                now: format!("{now} ({said})"),
            },
            FirewallError::Step {
                number,
                total,
                step,
                reason,
                message,
                mut done,
            } => {
                done.push(said);
                FirewallError::Step {
                    number,
                    total,
                    step,
                    reason,
                    message,
                    done,
                }
            }
            other => other,
        }
    }

    /// The Docker guard's repair from UFW's files as they are (no rule of the repo read, no
    /// file written): with `docker_guard: enforce` and UFW active, reloads UFW only when a live
    /// `DOCKER-USER` chain holds none of gitmoor's rules (flushed, not loaded), and puts the
    /// jump to `DOCKER-USER` first in `FORWARD` where it is not, in the families whose file
    /// holds a block. A block behind rules of others (an admin's `iptables -I`) or an older
    /// block is left as it is and reported: a reload flushes the chain, their rules too. A
    /// chain that cannot be read (the xtables lock held past the wait) is no reason to reload:
    /// nothing is done, and the error says why. Run by the daemon before each fetch (when
    /// [`crate::plan::docker_guard::repair_asked`]) and by the firewall unit when its rules
    /// part did not run.
    pub async fn repair_docker_guard(&self) -> Result<Repair, String> {
        if self.cfg.docker_guard != DockerGuard::Enforce {
            return Ok(Repair::default());
        }
        let blocks = self.file_blocks()?;
        if blocks.iter().all(Option::is_none) {
            return Ok(Repair::default());
        }
        // Inactive: loading the files would be enabling UFW, the unit's decision.
        if !self.ufw_active(&self.quick()).await? {
            return Ok(Repair::default());
        }
        let chains = self.chains_of(&blocks, &self.quick()).await?;
        let mut repair = Repair::default();
        let mut absent = false;
        for ((tool, ..), chain) in self.tables().into_iter().zip(&chains) {
            let Some((lines, at)) = chain else { continue };
            match at {
                ChainBlock::First => {}
                ChainBlock::Absent => absent = true,
                ChainBlock::Behind(before) => repair.notes.push(format!(
                    "DOCKER-USER ({tool}) has rules before gitmoor's block, which judge first: {}; left as they are",
                    quoted(before)
                )),
                ChainBlock::Other => repair.notes.push(format!(
                    "DOCKER-USER ({tool}) holds an older or incomplete gitmoor block; not reloaded, because a reload flushes the chain with the rules of others in it ({}): run `ufw reload` to load the block",
                    quoted(&foreign_rules_in_chain(lines).into_iter().cloned().collect::<Vec<_>>())
                )),
            }
        }
        if absent {
            for ((tool, ..), chain) in self.tables().into_iter().zip(&chains) {
                let Some((lines, at)) = chain else { continue };
                if *at == ChainBlock::Absent {
                    continue;
                }
                let foreign = foreign_rules_in_chain(lines);
                if !foreign.is_empty() {
                    repair.notes.push(format!(
                        "the reload dropped rules of others from DOCKER-USER ({tool}): {}",
                        quoted(&foreign.into_iter().cloned().collect::<Vec<_>>())
                    ));
                }
            }
            self.reload_or_say().await?;
            repair
                .done
                .push("ufw reload (DOCKER-USER loaded again from the files)".to_string());
        }
        repair
            .done
            .extend(self.jump_first(&blocks, &self.quick()).await?);
        Ok(repair)
    }

    /// The config with the repair's short timeout ([`REPAIR_READ_SECS`]).
    fn quick(&self) -> FirewallConfig {
        FirewallConfig {
            timeout_secs: self.cfg.timeout_secs.min(REPAIR_READ_SECS),
            ..self.cfg.clone()
        }
    }

    /// `ufw status`: active or not.
    async fn ufw_active(&self, cfg: &FirewallConfig) -> Result<bool, String> {
        let status = ufw_call(&self.program, cfg, &["status".to_string()])
            .run(&self.redact)
            .await
            .map_err(|e| e.to_string())?;
        parse_status_enabled(&String::from_utf8_lossy(&status.stdout))
    }

    /// `ufw reload`; on failure, the error says whether UFW is still active (a reload is a
    /// disable and an enable: a failure half-way may leave it off) and how to put it back.
    async fn reload_or_say(&self) -> Result<(), String> {
        let Err(e) = ufw_call(&self.program, &self.cfg, &["reload".to_string()])
            .run(&self.redact)
            .await
        else {
            return Ok(());
        };
        let now = match self.ufw_active(&self.quick()).await {
            Ok(true) => "UFW is still active".to_string(),
            Ok(false) => {
                "UFW is now INACTIVE (the firewall is off): fix the error and run `ufw enable`"
                    .to_string()
            }
            Err(s) => format!(
                "whether UFW is still active is not known (`ufw status`: {s}); check `ufw status`"
            ),
        };
        Err(format!("`ufw reload` failed: {e}; {now}"))
    }

    /// gitmoor's block in `after.rules` and `after6.rules` as they are (None: no file, or no
    /// block in it); `after6.rules` only counts with `IPV6=yes` (ufw loads it only then).
    fn file_blocks(&self) -> Result<[Option<String>; 2], String> {
        let default = std::fs::read_to_string(&self.cfg.default_file)
            .map_err(|e| format!("cannot read {}: {e}", self.cfg.default_file.display()))?;
        let (_, ipv6) = parse_default_file(&default);
        let mut out: [Option<String>; 2] = [None, None];
        for (i, name) in ["after.rules", "after6.rules"].into_iter().enumerate() {
            if i == 1 && !ipv6 {
                continue;
            }
            let path = self.cfg.etc_dir.join(name);
            out[i] = match std::fs::read_to_string(&path) {
                Ok(t) => block_in(&t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
        }
        Ok(out)
    }

    /// The live `DOCKER-USER` chain of each family whose file holds a block, read once, and
    /// where the block stands in it. A chain that cannot be read is an error: nothing is
    /// judged from a read that failed.
    async fn chains_of(
        &self,
        blocks: &[Option<String>; 2],
        cfg: &FirewallConfig,
    ) -> Result<[Option<(Vec<String>, ChainBlock)>; 2], String> {
        let mut out: [Option<(Vec<String>, ChainBlock)>; 2] = [None, None];
        for (i, ((tool, configured, key), block)) in
            self.tables().into_iter().zip(blocks).enumerate()
        {
            let Some(block) = block else { continue };
            let chain = docker_user_chain(tool, configured, key, cfg, &self.redact)
                .await
                .map_err(|e| {
                    format!("cannot read DOCKER-USER ({tool}), so nothing was changed: {e}")
                })?;
            let at = chain_block(&chain, block);
            out[i] = Some((chain, at));
        }
        Ok(out)
    }

    /// With `docker_guard: enforce`, writes gitmoor's `DOCKER-USER` block for `spec` into
    /// `after.rules` and `after6.rules` (when it differs) and reloads UFW, which loads the
    /// chain again from the files (also when only the live chain had lost the rules);
    /// otherwise removes a block gitmoor wrote before, and its rules from the live chains.
    /// Returns what it changed. On a failed reload the files are put back as they were and UFW
    /// reloaded again.
    pub async fn sync_docker_guard(
        &self,
        spec: &FirewallSpec,
        step: &GuardStep,
    ) -> Result<Vec<String>, String> {
        let enforce = self.cfg.docker_guard == DockerGuard::Enforce;
        if enforce != step.enforce {
            return Err(
                "the plan and the config disagree about firewall.docker_guard; nothing was changed"
                    .into(),
            );
        }
        let mut changed: Vec<(PathBuf, String)> = Vec::new();
        let mut done = Vec::new();
        for (name, v6) in [("after.rules", false), ("after6.rules", true)] {
            let path = self.cfg.etc_dir.join(name);
            let old = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // No file and nothing to remove: nothing to do (ufw ships both files).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !enforce => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            let block = enforce.then(|| docker_user_block(spec, v6));
            let new = splice_block(&old, block.as_deref())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if new == old {
                continue;
            }
            write_beside(&path, &new)?;
            done.push(format!(
                "{} gitmoor's DOCKER-USER block in {}",
                if enforce { "wrote" } else { "removed" },
                path.display()
            ));
            changed.push((path, old));
        }
        if changed.is_empty() && !enforce {
            // The files are clean: only rules left in the live chains, taken out one by one.
            done.extend(self.delete_live_marks().await?);
            return Ok(done);
        }
        // The files as they were and each chain holding something of gitmoor's: a reload
        // would flush DOCKER-USER (its declaration in the block), rules of others in it too
        // (an admin's `iptables -I` before the block), so only the jump is put first; the plan
        // notes a block behind others' rules or an older one.
        let blocks = self.file_blocks()?;
        if changed.is_empty() {
            let chains = self.chains_of(&blocks, &self.quick()).await?;
            if !chains
                .iter()
                .flatten()
                .any(|(_, at)| *at == ChainBlock::Absent)
            {
                done.extend(self.jump_first(&blocks, &self.quick()).await?);
                return Ok(done);
            }
        }
        let reload = ufw_call(&self.program, &self.cfg, &["reload".to_string()])
            .run(&self.redact)
            .await;
        if let Err(e) = reload {
            let mut put_back = Vec::new();
            for (path, old) in &changed {
                if let Err(w) = write_beside(path, old) {
                    put_back.push(w);
                }
            }
            let again = self.reload_or_say().await;
            let state = match (put_back.is_empty(), again) {
                (true, Ok(_)) => "the files were put back as they were and UFW reloaded".into(),
                (true, Err(e2)) => format!("the files were put back, but {e2}"),
                (false, _) => format!("the files could not be put back: {}", put_back.join("; ")),
            };
            return Err(format!(
                "`ufw reload` failed with the new block: {e}; {state}"
            ));
        }
        done.push(format!(
            "ufw reload{}",
            if changed.is_empty() {
                " (DOCKER-USER loaded again from the files)"
            } else {
                ""
            }
        ));
        if enforce {
            done.extend(self.jump_first(&self.file_blocks()?, &self.quick()).await?);
        } else {
            // A reload does not flush DOCKER-USER once the files no longer declare it.
            done.extend(self.delete_live_marks().await?);
        }
        Ok(done)
    }

    /// `iptables`/`ip6tables`, as the config names them or from `PATH`.
    fn tables(&self) -> [(&'static str, Option<&Path>, &'static str); 2] {
        [
            (
                "iptables",
                self.cfg.iptables_binary.as_deref(),
                "firewall.iptables_binary",
            ),
            (
                "ip6tables",
                self.cfg.ip6tables_binary.as_deref(),
                "firewall.ip6tables_binary",
            ),
        ]
    }

    async fn table_call(
        &self,
        program: &Path,
        argv: &[&str],
        cfg: &FirewallConfig,
    ) -> Result<(), ProcessError> {
        Process::new(program)
            .args(argv)
            .env("LC_ALL", "C")
            .timeout(std::time::Duration::from_secs(cfg.timeout_secs))
            .run(&self.redact)
            .await
            .map(|_| ())
    }

    /// Makes the jump to `DOCKER-USER` the first rule of `FORWARD` where it is not, in the
    /// families whose file holds a block (ufw loaded the chain there; with `IPV6=no` there is
    /// no IPv6 block, and no IPv6 jump is made): dockerd 20.10 makes that jump for IPv4 only
    /// (so the IPv6 block would judge nothing), and a dockerd restart puts its own rules
    /// before it. Any other jump to the chain is deleted first, so there is one. A `FORWARD`
    /// that cannot be read is an error: read as empty, it would add a second jump.
    async fn jump_first(
        &self,
        blocks: &[Option<String>; 2],
        cfg: &FirewallConfig,
    ) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for ((tool, configured, key), block) in self.tables().into_iter().zip(blocks) {
            if block.is_none() {
                continue;
            }
            let forward = iptables_list(tool, configured, key, "FORWARD", cfg, &self.redact)
                .await
                .map_err(|e| format!("cannot read FORWARD ({tool}), so the jump to DOCKER-USER was not checked: {e}"))?;
            if forward_starts_with_docker_user(&forward) {
                continue;
            }
            let program = resolve_program(tool, configured, key).map_err(|e| e.to_string())?;
            let jumps = forward
                .iter()
                .filter(|l| l.trim() == "-A FORWARD -j DOCKER-USER")
                .count();
            for _ in 0..jumps {
                self.table_call(
                    &program,
                    &["-w", "5", "-D", "FORWARD", "-j", "DOCKER-USER"],
                    cfg,
                )
                .await
                .map_err(|e| format!("cannot move the jump to DOCKER-USER: {e}"))?;
            }
            self.table_call(
                &program,
                &["-w", "5", "-I", "FORWARD", "1", "-j", "DOCKER-USER"],
                cfg,
            )
            .await
            .map_err(|e| format!("cannot put the jump to DOCKER-USER first in FORWARD: {e}"))?;
            done.push(format!("{tool} -I FORWARD 1 -j DOCKER-USER"));
        }
        Ok(done)
    }

    /// Deletes the rules of gitmoor's block still in the live `DOCKER-USER` chains (the guard
    /// was switched off): each by its own spec, as `iptables -S` prints it, never a flush (the
    /// chain may hold the admin's rules too).
    async fn delete_live_marks(&self) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for (tool, configured, key) in self.tables() {
            let Ok(chain) = docker_user_chain(tool, configured, key, &self.cfg, &self.redact).await
            else {
                continue;
            };
            let program = resolve_program(tool, configured, key).map_err(|e| e.to_string())?;
            for line in block_rules_in_chain(&chain) {
                let mut words = line.split_whitespace();
                if words.next() != Some("-A") {
                    continue;
                }
                let mut argv: Vec<String> = vec!["-w".into(), "5".into(), "-D".into()];
                argv.extend(words.map(str::to_string));
                let args: Vec<&str> = argv.iter().map(String::as_str).collect();
                self.table_call(&program, &args, &self.cfg)
                    .await
                    .map_err(|e| format!("cannot delete gitmoor's rule `{line}`: {e}"))?;
                done.push(format!("{tool} {}", argv[2..].join(" ")));
            }
        }
        Ok(done)
    }
}

fn quoted(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("`{}`", l.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The warnings the daemon's repair logged at its last tick: the same again at the next (ufw
/// missing, a chain locked, an admin's rule before the block) goes to debug, so a condition
/// that lasts is said once, not at every poll.
static LOGGED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The daemon's Docker guard repair, before each fetch: only when it is asked for
/// ([`crate::plan::docker_guard::repair_asked`]: `docker_guard: enforce` and the last applied
/// commit had a `ufw/` folder); otherwise no process is started. What it did is logged; its
/// warnings once while they last.
pub async fn repair_tick(fw: &FirewallConfig, state_dir: &Path) {
    let state = match State::load(state_dir) {
        Ok(s) => s,
        Err(e) => {
            debug!(error = %format!("{e:#}"), "firewall: the Docker guard repair waits for a readable state");
            return;
        }
    };
    if !crate::plan::docker_guard::repair_asked(fw.docker_guard, &state) {
        return;
    }
    let mut warnings = Vec::new();
    match UfwHost::new(fw, crate::redact::Redactor::default()) {
        Err(e) => warnings.push(format!(
            "firewall: cannot drive ufw to keep the Docker guard in force: {e}"
        )),
        Ok(host) => match host.repair_docker_guard().await {
            Ok(r) => {
                for line in &r.done {
                    info!(change = %line, "firewall: Docker guard put back in force");
                }
                warnings.extend(r.notes.iter().map(|n| format!("firewall: {n}")));
            }
            Err(e) => warnings.push(format!(
                "firewall: the Docker guard could not be put back in force: {e}"
            )),
        },
    }
    let now: BTreeSet<String> = warnings.into_iter().collect();
    let mut logged = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    for w in &now {
        if logged.contains(w) {
            debug!("{w} (still)");
        } else {
            warn!("{w}");
        }
    }
    *logged = now;
}

/// Replaces `path` with `text` atomically (a temporary file beside it, renamed over it), with
/// the mode the file had: ufw's files are 0640, and a reader must never see half a file.
fn write_beside(path: &Path, text: &str) -> Result<(), String> {
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o640);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.gitmoor-tmp"));
    let result = (|| {
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_of_a_block_in_the_chain_are_those_between_its_markers() {
        let chain: Vec<String> = [
            "-N DOCKER-USER",
            "-A DOCKER-USER -s 192.0.2.9/32 -j DROP",
            "-A DOCKER-USER -m comment --comment gitmoor-guard-begin-abc",
            "-A DOCKER-USER -j DROP",
            "-A DOCKER-USER -m comment --comment gitmoor-guard-end-abc",
            "-A DOCKER-USER -j RETURN",
            "-A DOCKER-USER -m comment --comment gitmoor-guard-begin-def",
            "-A DOCKER-USER -p tcp -j REJECT --reject-with tcp-reset",
        ]
        .map(String::from)
        .to_vec();
        let got: Vec<&str> = block_rules_in_chain(&chain)
            .into_iter()
            .map(String::as_str)
            .collect();
        // The second block lost its end marker: only its marker goes, never the rule after
        // it, which may be the admin's.
        assert_eq!(got, [&chain[2][..], &chain[3], &chain[4], &chain[6]]);
    }

    #[test]
    fn an_end_marker_of_another_hash_does_not_close_a_block() {
        let chain: Vec<String> = [
            "-A DOCKER-USER -m comment --comment gitmoor-guard-begin-abc",
            "-A DOCKER-USER -j DROP",
            "-A DOCKER-USER -m comment --comment gitmoor-guard-end-def",
            "-A DOCKER-USER -s 192.0.2.9/32 -j DROP",
        ]
        .map(String::from)
        .to_vec();
        let got: Vec<&str> = block_rules_in_chain(&chain)
            .into_iter()
            .map(String::as_str)
            .collect();
        assert_eq!(got, [&chain[0][..], &chain[2]]);
    }
}

#[cfg(test)]
#[path = "ufw_repair_tests.rs"]
mod repair_tests;
