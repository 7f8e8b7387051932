//! What was applied and when, in `<state_dir>/state.json`: the last applied commit, each unit's
//! outcome and last healthy commit (keyed `stack/<name>`; a file from before units, with a
//! `stacks` map, still loads), the last attempt (so a bad commit is not retried in a loop),
//! and a short history. Written atomically (temp file, fsync, rename), so a crash leaves either
//! the old file or the new one. Holds names, shas, reasons and errors: never a secret value.

use crate::plan::cert_backoff::{CertFailures, NameFailures};
use crate::plan::render::ActionView;
use crate::plan::UnitId;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many deployments the history keeps.
pub const HISTORY_LEN: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The last commit whose apply succeeded for every stack.
    pub applied: Option<CommitRef>,
    /// The last attempt, successful or not.
    pub last_attempt: Option<Attempt>,
    /// Each unit's outcome, by `UnitId::key` (`stack/app`).
    #[serde(default)]
    pub units: BTreeMap<String, UnitState>,
    /// The per-stack map of the files written before units: read once, moved into `units`;
    /// written again by `save` (the stack units by name), so that an older gitmoor, which
    /// requires it, still reads this file instead of setting it aside with its history and
    /// crash marks.
    #[serde(default, rename = "stacks", skip_serializing_if = "BTreeMap::is_empty")]
    legacy_stacks: BTreeMap<String, UnitState>,
    /// Newest first.
    pub history: Vec<Attempt>,
    /// A reconcile that started on new inputs and has not recorded its end yet. Written before
    /// the expensive steps, so a process killed on the way (out of memory on a hostile commit,
    /// `kill -9`) leaves a trace, and the next start does not walk into the same wall forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<InProgress>,
    /// Inputs whose reading the process did not survive, and how many times in a row: once may
    /// be the machine, twice is the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub died_reading: Option<(String, u32)>,
    /// certbot's failed runs within the last hour, by DNS name: the plan stops asking Let's
    /// Encrypt for a name that keeps failing (`plan::cert_backoff`). Absent from older files.
    #[serde(
        default,
        rename = "cert_failures_by_name",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cert_failures: NameFailures,
    /// The per-site records of older files (`cert_failures`): read once, counted per name
    /// into `cert_failures`, never written.
    #[serde(default, rename = "cert_failures", skip_serializing)]
    legacy_cert_failures: BTreeMap<String, CertFailures>,
    /// The end (`notAfter`) of each Let's Encrypt lineage's certificate at gitmoor's last
    /// successful nginx reload: what nginx serves. A certificate on disk that differs was
    /// written since (certbot.timer) and the plan reloads nginx. Absent from older files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certs_loaded: BTreeMap<String, i64>,
    /// Whether the last commit applied whole had a `ufw/` folder (set with the units it kept,
    /// [`State::retain_units`]): the daemon's Docker guard repair runs only then, so a host
    /// without UFW is never asked about it at every poll. Absent from older files (their
    /// `firewall/ufw` unit says the same).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub firewall_in_repo: bool,
}

/// Where an unfinished reconcile was when it was last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    pub commit: CommitRef,
    /// `Attempt::inputs` of the reconcile.
    pub inputs: String,
    /// Unix seconds.
    pub started: i64,
    pub phase: Phase,
}

/// Reading has no effect on the host and is a pure function of the inputs: dying there will
/// happen again on the same inputs. Applying may have died for an outside reason (a reboot) and
/// left the host half-changed, so it is retried, with the backoff of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Reading,
    Applying,
}

/// How a reconcile ended, as `state.json`, `/status` and `/metrics` spell it. One type, so a
/// misspelt result is a compile error rather than a state that never matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileResult {
    /// Changes were applied and all succeeded.
    Success,
    /// The host already matched the commit.
    Noop,
    /// Bad input (spec errors, an impossible plan): nothing on the host changed.
    Invalid,
    /// An action failed; the stack's error says which.
    Failed,
    /// The same inputs failed before; they wait for a push or a secrets edit.
    Skipped,
    /// The fetch, dockerd or the state dir failed (never written to `state.json`).
    Error,
}

impl ReconcileResult {
    /// In the order `/metrics` lists them (its output must not move between versions).
    pub const ALL: [ReconcileResult; 6] = [
        ReconcileResult::Success,
        ReconcileResult::Noop,
        ReconcileResult::Invalid,
        ReconcileResult::Failed,
        ReconcileResult::Skipped,
        ReconcileResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Noop => "noop",
            ReconcileResult::Invalid => "invalid",
            ReconcileResult::Failed => "failed",
            ReconcileResult::Skipped => "skipped",
            ReconcileResult::Error => "error",
        }
    }

    /// Success or noop: afterwards the commit is what runs, so it counts as deployed.
    pub fn is_ok(self) -> bool {
        matches!(self, ReconcileResult::Success | ReconcileResult::Noop)
    }
}

impl std::fmt::Display for ReconcileResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReconcileResult {
    type Err = String;

    /// The spelling of `as_str` (what `/status` carries back to `gitmoor status`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReconcileResult::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reconcile result {s:?}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRef {
    pub sha: String,
    pub subject: String,
    pub author: String,
    /// Commit time, unix seconds.
    pub time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub commit: CommitRef,
    /// Hash of everything the attempt read (commit + secrets files): the same inputs after a
    /// failure are not tried again until they change.
    pub inputs: String,
    /// Unix seconds.
    pub started: i64,
    pub duration_ms: u64,
    /// `success`, `noop`, `invalid` or `failed`: a skipped reconcile leaves no attempt, and one
    /// that could not fetch or reach dockerd never gets this far.
    pub result: ReconcileResult,
    pub actions: Vec<ActionView>,
    pub error: Option<String>,
    /// Consecutive failures of these same inputs.
    #[serde(default)]
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    /// The last commit this unit was applied from without error.
    pub last_good_commit: Option<String>,
    /// `success` or `failed`.
    pub result: ReconcileResult,
    pub error: Option<String>,
    /// Unix seconds.
    pub updated: i64,
}

impl State {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("state.json")
    }

    /// The writer's read: a state file that cannot be parsed (a disk error, a hand edit) is
    /// renamed aside to `state.json.corrupt-<unix time>` and a fresh state is used, with a warning
    /// naming both. Nothing the plan needs lives only here (containers carry their own labels),
    /// so the next apply rebuilds it; only the history and the retry memory are lost.
    pub fn load_or_set_aside(state_dir: &Path) -> anyhow::Result<(State, Option<String>)> {
        match Self::load(state_dir) {
            Ok(s) => Ok((s, None)),
            Err(e) if e.downcast_ref::<serde_json::Error>().is_some() => {
                let path = Self::path(state_dir);
                let aside = state_dir.join(format!(
                    "state.json.corrupt-{}",
                    chrono::Utc::now().timestamp()
                ));
                std::fs::rename(&path, &aside).with_context(|| {
                    format!("{} is corrupt and cannot be moved aside", path.display())
                })?;
                let warning = format!(
                    "{} was not valid gitmoor state ({}); moved it to {} and started afresh",
                    path.display(),
                    e.root_cause(),
                    aside.display()
                );
                Ok((State::default(), Some(warning)))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the state; a missing file is a fresh host. A corrupt one is an error naming it.
    pub fn load(state_dir: &Path) -> anyhow::Result<State> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_json(&bytes).with_context(|| {
                format!(
                    "{} is not valid gitmoor state; move it aside to start afresh",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Parses a state file, of this version or of one before units.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<State> {
        serde_json::from_slice::<State>(bytes).map(State::upgraded)
    }

    /// A file from before units kept a `stacks` map: its entries are the stack units.
    fn upgraded(mut self) -> State {
        for (name, st) in std::mem::take(&mut self.legacy_stacks) {
            self.units.entry(UnitId::Stack(name).key()).or_insert(st);
        }
        let old = std::mem::take(&mut self.legacy_cert_failures);
        for (name, mut at) in crate::plan::cert_backoff::from_legacy(old.values()) {
            let mine = self.cert_failures.entry(name).or_default();
            mine.append(&mut at);
            mine.sort_unstable();
            mine.dedup();
        }
        self
    }

    /// The recorded stacks by name (the units of kind stack).
    pub fn stacks(&self) -> BTreeMap<String, UnitState> {
        self.units
            .iter()
            .filter_map(|(k, v)| Some((UnitId::from_key(k)?.stack()?.to_string(), v.clone())))
            .collect()
    }

    pub fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        let mut file = self.clone();
        file.legacy_stacks = self.stacks();
        let bytes = serde_json::to_vec_pretty(&file)?;
        write_atomic(&Self::path(state_dir), &bytes)
    }

    /// Records an attempt: history, per-unit outcomes, the applied commit on success.
    pub fn record(
        &mut self,
        mut attempt: Attempt,
        unit_results: &BTreeMap<UnitId, Result<(), String>>,
    ) {
        if let Some(prev) = &self.last_attempt {
            if prev.inputs == attempt.inputs && prev.failures > 0 && !attempt.result.is_ok() {
                attempt.failures = prev.failures + 1;
            }
        }
        if attempt.failures == 0
            && matches!(
                attempt.result,
                ReconcileResult::Invalid | ReconcileResult::Failed
            )
        {
            attempt.failures = 1;
        }
        for (unit, r) in unit_results {
            // The firewall unit ran: UFW's files may hold gitmoor's block from now on.
            self.firewall_in_repo |= *unit == UnitId::Firewall;
            let key = unit.key();
            // A failure keeps the last good commit: it is what still runs there.
            let kept_good = self.units.remove(&key).and_then(|s| s.last_good_commit);
            let s = match r {
                Ok(()) => UnitState {
                    last_good_commit: Some(attempt.commit.sha.clone()),
                    result: ReconcileResult::Success,
                    error: None,
                    updated: attempt.started,
                },
                Err(e) => UnitState {
                    last_good_commit: kept_good,
                    result: ReconcileResult::Failed,
                    error: Some(e.clone()),
                    updated: attempt.started,
                },
            };
            self.units.insert(key, s);
        }
        if attempt.result.is_ok() {
            self.applied = Some(attempt.commit.clone());
        }
        self.in_progress = None;
        let is_repeat_noop = attempt.result == ReconcileResult::Noop
            && self.history.first().is_some_and(|h| {
                h.result == ReconcileResult::Noop && h.commit.sha == attempt.commit.sha
            });
        if !is_repeat_noop {
            self.history.insert(0, attempt.clone());
            self.history.truncate(HISTORY_LEN);
        }
        self.last_attempt = Some(attempt);
    }

    /// Notes a certbot run for `names` at `now` (a failure counts for each name), and forgets
    /// failures an hour old.
    pub fn note_certbot(&mut self, names: &[String], failed: bool, now: i64) {
        crate::plan::cert_backoff::note_run(&mut self.cert_failures, names, failed, now);
    }

    /// Forgets units that are no longer in the repo and hold nothing on the host (a key this
    /// version cannot read is kept: a newer gitmoor wrote it).
    /// `keep` is the applied commit's units: whether it holds the firewall is noted too.
    pub fn retain_units(&mut self, keep: impl Fn(&UnitId) -> bool) {
        self.firewall_in_repo = keep(&UnitId::Firewall);
        self.units
            .retain(|k, _| UnitId::from_key(k).is_none_or(|u| keep(&u)));
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("state path has no parent directory")?;
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    {
        let _ = std::fs::remove_file(&tmp);
        let mut f =
            private_file(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `dir` (and its parents) and makes `dir` itself 0700 whatever the umask: the state
/// dir holds errors, paths, the hash key and the repo cache, for root's eyes only.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// Opens `path` for writing as a new or truncated file readable by its owner only (0600),
/// whatever the umask.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through open(2): narrow it too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(sha: &str, result: &str) -> Attempt {
        Attempt {
            commit: CommitRef {
                sha: sha.into(),
                subject: "s".into(),
                author: "a".into(),
                time: 0,
            },
            inputs: format!("in-{sha}"),
            started: 1,
            duration_ms: 2,
            result: result.parse().unwrap(),
            actions: vec![],
            error: None,
            failures: 0,
        }
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let mut r = BTreeMap::new();
        r.insert(UnitId::Stack("api".into()), Ok(()));
        s.record(attempt("a1", "success"), &r);
        s.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), s);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(s.stacks()["api"].last_good_commit.as_deref(), Some("a1"));
    }

    #[test]
    fn failure_keeps_the_last_good_commit_and_counts_repeats() {
        let mut s = State::default();
        let mut ok = BTreeMap::new();
        ok.insert(UnitId::Stack("api".into()), Ok(()));
        s.record(attempt("good", "success"), &ok);
        let mut bad = BTreeMap::new();
        bad.insert(UnitId::Stack("api".into()), Err("boom".to_string()));
        s.record(attempt("bad", "failed"), &bad);
        s.record(attempt("bad", "failed"), &bad);
        assert_eq!(s.applied.as_ref().unwrap().sha, "good");
        assert_eq!(s.stacks()["api"].last_good_commit.as_deref(), Some("good"));
        assert_eq!(s.stacks()["api"].error.as_deref(), Some("boom"));
        assert_eq!(s.last_attempt.as_ref().unwrap().failures, 2);
    }

    /// A file this version writes still holds the per-stack map an older gitmoor requires.
    #[test]
    fn the_saved_file_keeps_the_stacks_map_for_an_older_gitmoor() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let mut r = BTreeMap::new();
        r.insert(UnitId::Stack("api".into()), Ok(()));
        s.record(attempt("a1", "success"), &r);
        s.save(dir.path()).unwrap();
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(State::path(dir.path())).unwrap()).unwrap();
        assert_eq!(raw["stacks"]["api"]["last_good_commit"], "a1", "{raw:#}");
        assert_eq!(
            raw["units"]["stack/api"]["last_good_commit"], "a1",
            "{raw:#}"
        );
        assert_eq!(State::load(dir.path()).unwrap(), s);
    }

    #[test]
    fn repeated_noops_do_not_flood_the_history() {
        let mut s = State::default();
        for _ in 0..5 {
            s.record(attempt("same", "noop"), &BTreeMap::new());
        }
        assert_eq!(s.history.len(), 1);
    }

    #[test]
    fn results_keep_their_spelling_in_the_state_file() {
        let old = r#"{"applied":null,"last_attempt":{"commit":{"sha":"a","subject":"s","author":"x","time":0},"inputs":"i","started":1,"duration_ms":2,"result":"invalid","actions":[],"error":"bad","failures":1},"stacks":{"api":{"last_good_commit":null,"result":"failed","error":"e","updated":1}},"history":[]}"#;
        // A file from before units: its `stacks` become stack units.
        let s = State::from_json(old.as_bytes()).unwrap();
        assert_eq!(
            s.last_attempt.as_ref().unwrap().result,
            ReconcileResult::Invalid
        );
        assert_eq!(s.stacks()["api"].result, ReconcileResult::Failed);
        let now = old.replace(r#""stacks":{"api""#, r#""units":{"stack/api""#);
        assert_eq!(serde_json::to_string(&s).unwrap(), now);
        assert_eq!(State::from_json(now.as_bytes()).unwrap(), s);
        for r in ReconcileResult::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
            assert_eq!(r.as_str().parse::<ReconcileResult>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
        }
        assert!("Success".parse::<ReconcileResult>().is_err());
    }

    #[test]
    fn a_corrupt_state_file_is_set_aside_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(State::path(dir.path()), b"{nope").unwrap();
        let (state, warning) = State::load_or_set_aside(dir.path()).unwrap();
        assert_eq!(state, State::default());
        let warning = warning.unwrap();
        assert!(warning.contains("state.json.corrupt-"), "{warning}");
        assert!(!State::path(dir.path()).exists());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.corrupt-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "the corrupt file is kept for a look");
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), b"{nope");
    }

    #[test]
    fn an_unreadable_state_is_not_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: an I/O error, not a parse error.
        std::fs::create_dir(State::path(dir.path())).unwrap();
        assert!(State::load_or_set_aside(dir.path()).is_err());
        assert!(State::path(dir.path()).is_dir());
    }

    #[test]
    fn state_files_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(State::path(&sub), b"{}").unwrap();
        std::fs::set_permissions(State::path(&sub), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        State::default().save(&sub).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&State::path(&sub)), 0o600);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(State::path(dir.path()), b"{nope").unwrap();
        let err = format!("{:#}", State::load(dir.path()).unwrap_err());
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn certbot_failures_are_kept_per_name_and_older_files_load_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let api = vec!["api.example.fr".to_string()];
        s.note_certbot(&api, true, 1_000);
        s.note_certbot(&api, true, 1_060);
        s.save(dir.path()).unwrap();
        let back = State::load(dir.path()).unwrap();
        assert_eq!(back.cert_failures["api.example.fr"], [1_000, 1_060]);
        // Old failures leave on the next note.
        s.note_certbot(&api, false, 5_000);
        assert!(s.cert_failures.is_empty());
        // A file from before counted per site: each of the site's names gets its failures, and
        // the old key is not written again.
        let old = r#"{"applied":null,"last_attempt":null,"units":{},"history":[],
            "cert_failures":{"api":{"names":["api.example.fr","www.example.fr"],"at":[10,20]}}}"#;
        let s = State::from_json(old.as_bytes()).unwrap();
        assert_eq!(s.cert_failures["api.example.fr"], [10, 20]);
        assert_eq!(s.cert_failures["www.example.fr"], [10, 20]);
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            !text.contains("\"cert_failures\"") && text.contains("cert_failures_by_name"),
            "{text}"
        );
        let text = serde_json::to_string(&State::default()).unwrap();
        assert!(!text.contains("cert_failures"), "{text}");
    }
}
