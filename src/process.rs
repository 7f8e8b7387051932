//! The one place gitmoor starts an external program (nginx, certbot, ufw, `sshd -T`, …).
//!
//! Why one place: gitmoor runs as root on input pushed to a branch, so every process it starts
//! must be started the same careful way, and reviewed in one file:
//! - **argv only.** The program and each argument are separate `OsString`s handed to `execve`;
//!   no shell ever parses them, so `; rm -rf /` in an argument is just bytes in that argument.
//! - **The binary is the caller's choice, by path.** [`resolve_program`] takes an override from
//!   the config first, else searches `PATH` (absolute entries only: a relative entry would make
//!   the binary depend on the daemon's working directory).
//! - **A timeout.** A hung program must not hang a reconcile. The child is started in its own
//!   process group; on expiry the whole group is killed (`SIGKILL`), so a program that forked
//!   helpers leaves none behind, and the child is reaped. `kill_on_drop` covers a caller that
//!   drops the future (a cancelled reconcile).
//! - **Bounded output.** stdout and stderr are read concurrently (a full pipe would otherwise
//!   block the child) and kept up to a cap each; the rest is read and dropped.
//! - **Errors a person can act on, without secrets.** A failure names the program, its
//!   arguments, the exit status (or the timeout) and what it printed on stderr, all passed
//!   through the caller's [`Redactor`]: a program may echo a secret it was given.
//!
//! stdin is `/dev/null`: no program gitmoor runs may wait for input. The environment is
//! inherited unless the caller clears or sets it.

use crate::redact::Redactor;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Default cap on each of stdout and stderr: enough for `sshd -T` or `nginx -T` of a host, small
/// enough that a runaway program cannot fill the daemon's memory.
pub const DEFAULT_OUTPUT_CAP: usize = 1 << 20;

/// Where [`resolve_program`] looks when the daemon's environment has no `PATH`.
const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One program to run: built with [`Process::new`], run with [`Process::run`].
#[derive(Debug, Clone)]
pub struct Process {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    env_clear: bool,
    current_dir: Option<PathBuf>,
    timeout: Duration,
    output_cap: usize,
    ok_codes: Vec<i32>,
}

/// What a finished program printed. stdout is as the program wrote it (the caller parses it);
/// stderr is redacted, since it mostly ends up in logs and errors.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// stdout was longer than the cap and was cut there.
    pub stdout_truncated: bool,
    pub stderr: String,
}

/// Why a program could not be run or did not succeed.
#[derive(Debug)]
pub struct ProcessError {
    /// The program's path.
    pub program: PathBuf,
    /// Its arguments, redacted, as text.
    pub args: Vec<String>,
    pub failure: Failure,
    /// What it printed on stderr (up to the cap), redacted; empty when it never started.
    pub stderr: String,
}

#[derive(Debug)]
pub enum Failure {
    /// The program was not found or not usable ([`resolve_program`]).
    NotFound { detail: String, fix: String },
    /// `execve` (or setting up its pipes) failed.
    Spawn(std::io::Error),
    /// It ran longer than its timeout; it and its process group were killed.
    TimedOut(Duration),
    /// It exited with a status the caller does not accept (or was killed by a signal).
    Exit(ExitStatus),
    /// Reading its output or waiting for it failed.
    Io(std::io::Error),
}

impl Process {
    /// `program` is a path (see [`resolve_program`]); a bare name would be looked up in `PATH`
    /// by the OS, so resolve it first. Defaults: 60 s timeout, [`DEFAULT_OUTPUT_CAP`], success
    /// is exit code 0.
    pub fn new(program: impl Into<PathBuf>) -> Process {
        Process {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            env_clear: false,
            current_dir: None,
            timeout: Duration::from_secs(60),
            output_cap: DEFAULT_OUTPUT_CAP,
            ok_codes: vec![0],
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Process {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Process {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Starts the program with an empty environment (plus what [`Process::env`] sets).
    pub fn env_clear(mut self) -> Process {
        self.env_clear = true;
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Process {
        self.current_dir = Some(dir.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Process {
        self.timeout = timeout;
        self
    }

    /// The most bytes kept of stdout and of stderr, each.
    pub fn output_cap(mut self, bytes: usize) -> Process {
        self.output_cap = bytes;
        self
    }

    /// Exit codes that count as success (`systemctl is-active` says "inactive" with 3).
    pub fn ok_exit_codes(mut self, codes: &[i32]) -> Process {
        self.ok_codes = codes.to_vec();
        self
    }

    /// Runs the program to its end (or its timeout). Ok when it exited with an accepted code;
    /// every other outcome is a [`ProcessError`] redacted with `redact`.
    pub async fn run(&self, redact: &Redactor) -> Result<Output, ProcessError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a timeout can kill whatever it started too.
            .process_group(0)
            .kill_on_drop(true);
        if self.env_clear {
            cmd.env_clear();
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| self.error(Failure::Spawn(e), &Capture::default(), redact))?;
        let pid = child.id();
        let (mut out, mut err) = (Capture::default(), Capture::default());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let cap = self.output_cap;
        let finished = tokio::time::timeout(self.timeout, async {
            let (o, e, status) = tokio::join!(
                out.read_from(stdout, cap),
                err.read_from(stderr, cap),
                child.wait()
            );
            o.and(e).and(status)
        })
        .await;
        let status = match finished {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                kill_group(pid);
                let _ = child.kill().await;
                return Err(self.error(Failure::Io(e), &err, redact));
            }
            Err(_elapsed) => {
                kill_group(pid);
                // SIGKILL (again) and wait: the child is reaped, not left a zombie.
                let _ = child.kill().await;
                return Err(self.error(Failure::TimedOut(self.timeout), &err, redact));
            }
        };
        let accepted = status.code().is_some_and(|c| self.ok_codes.contains(&c));
        if !accepted {
            return Err(self.error(Failure::Exit(status), &err, redact));
        }
        Ok(Output {
            status,
            stdout: out.bytes,
            stdout_truncated: out.truncated,
            stderr: err.redacted(redact),
        })
    }

    fn error(&self, failure: Failure, stderr: &Capture, redact: &Redactor) -> ProcessError {
        ProcessError {
            program: self.program.clone(),
            args: redact_args(&self.args, redact),
            failure,
            stderr: stderr.redacted(redact),
        }
    }
}

/// Kills the process group the child leads (its pid is the group id, see `process_group(0)`).
fn kill_group(pid: Option<u32>) {
    let Some(pgid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. A negative pid names
    // the group. Its id cannot be handed to another group while the leader is unreaped, or
    // while any member lives (a helper that kept the pipes open after the leader exited).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// The arguments as text for messages, each redacted.
fn redact_args(args: &[OsString], redact: &Redactor) -> Vec<String> {
    args.iter()
        .map(|a| redact.apply(&a.to_string_lossy()))
        .collect()
}

/// One output stream, kept up to a cap.
#[derive(Debug, Default)]
struct Capture {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Capture {
    /// Reads `stream` to its end, keeping the first `cap` bytes; the rest is read and dropped so
    /// the program never blocks on a full pipe. Bytes read so far stay in `self` if the future
    /// is dropped (a timeout), so the error can still show them.
    async fn read_from<R: AsyncRead + Unpin>(
        &mut self,
        stream: Option<R>,
        cap: usize,
    ) -> std::io::Result<()> {
        let Some(mut stream) = stream else {
            return Ok(());
        };
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            let room = cap.saturating_sub(self.bytes.len());
            if n > room {
                self.truncated = true;
            }
            self.bytes.extend_from_slice(&chunk[..n.min(room)]);
        }
    }

    /// The text, redacted. When it was cut, the last bytes before the cut could be the start
    /// of a secret that `redact` cannot recognise whole, so they go too.
    fn redacted(&self, redact: &Redactor) -> String {
        let mut kept: &[u8] = &self.bytes;
        if self.truncated {
            let unsure = redact.longest().saturating_sub(1);
            kept = &kept[..kept.len().saturating_sub(unsure)];
        }
        let mut text = redact.apply(&String::from_utf8_lossy(kept));
        if self.truncated {
            text.push_str(" … (cut)");
        }
        text
    }
}

/// The program to run for `name`: `configured` (a path from the config, `config_key` names the
/// setting) when given, else the first executable `name` in the absolute entries of `PATH`.
/// Errors say which file was wrong or where it was looked for, and the setting that fixes it.
pub fn resolve_program(
    name: &str,
    configured: Option<&Path>,
    config_key: &str,
) -> Result<PathBuf, ProcessError> {
    let not_found = |program: PathBuf, detail: String, fix: String| ProcessError {
        program,
        args: Vec::new(),
        failure: Failure::NotFound { detail, fix },
        stderr: String::new(),
    };
    if let Some(path) = configured {
        let fix = format!("set {config_key} to the absolute path of an executable {name}");
        if !path.is_absolute() {
            return Err(not_found(
                path.to_path_buf(),
                format!("{config_key} is not an absolute path"),
                fix,
            ));
        }
        return match is_executable(path) {
            Ok(()) => Ok(path.to_path_buf()),
            Err(detail) => Err(not_found(path.to_path_buf(), detail, fix)),
        };
    }
    let fix = format!("install {name}, or set {config_key} to its absolute path");
    if name.is_empty() || name.contains('/') {
        return Err(not_found(
            PathBuf::from(name),
            "a program name is a bare file name".to_string(),
            fix,
        ));
    }
    let path_var = std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into());
    let dirs: Vec<PathBuf> = std::env::split_paths(&path_var)
        .filter(|d| d.is_absolute())
        .collect();
    if let Some(found) = dirs
        .iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p).is_ok())
    {
        return Ok(found);
    }
    let searched = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    Err(not_found(
        PathBuf::from(name),
        format!("no executable {name} in PATH ({searched})"),
        fix,
    ))
}

/// Ok for a regular file with an execute bit; Err says what it is instead.
fn is_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(format!("{} is not a regular file", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Err(format!("{} is not executable", path.display()))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot use {}: {e}", path.display())),
    }
}

impl ProcessError {
    /// The exit code, when the program exited (not killed, not unstarted).
    pub fn exit_code(&self) -> Option<i32> {
        match &self.failure {
            Failure::Exit(status) => status.code(),
            _ => None,
        }
    }

    /// The command as a person would type it (each argument quoted as a shell would need it;
    /// it was never given to one).
    pub fn command_line(&self) -> String {
        let mut words = vec![quote(&self.program.to_string_lossy())];
        words.extend(self.args.iter().map(|a| quote(a)));
        words.join(" ")
    }
}

fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| format!("{word:?}"), |q| q.into_owned())
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cmd = self.command_line();
        match &self.failure {
            Failure::NotFound { detail, fix } => {
                return write!(f, "cannot run {cmd}: {detail}; {fix}")
            }
            Failure::Spawn(e) => write!(f, "cannot start {cmd}: {e}")?,
            Failure::TimedOut(t) => write!(
                f,
                "{cmd} did not finish within {} ms and was killed",
                t.as_millis()
            )?,
            Failure::Exit(status) => write!(f, "{cmd} failed ({status})")?,
            Failure::Io(e) => write!(f, "cannot read the output of {cmd}: {e}")?,
        }
        let stderr = self.stderr.trim();
        if !stderr.is_empty() {
            write!(f, "; stderr: {stderr}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Spawn(e) | Failure::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_stream_drops_what_could_be_the_start_of_a_secret() {
        let r = Redactor::new(["s3cr3t-token"]);
        let c = Capture {
            bytes: b"error: s3cr3t-token and then s3cr3t-to".to_vec(),
            truncated: true,
        };
        let shown = c.redacted(&r);
        assert!(shown.starts_with("error: *** and the"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.ends_with("(cut)"), "{shown}");
    }

    #[test]
    fn the_command_line_quotes_each_argument() {
        let e = ProcessError {
            program: "/usr/sbin/nginx".into(),
            args: vec!["-t".into(), "a b; c".into()],
            failure: Failure::TimedOut(Duration::from_millis(200)),
            stderr: "\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "/usr/sbin/nginx -t 'a b; c' did not finish within 200 ms and was killed"
        );
    }

    #[test]
    fn resolve_refuses_relative_and_missing_programs() {
        let e = resolve_program("nginx", Some(Path::new("bin/nginx")), "nginx_bin").unwrap_err();
        assert!(e.to_string().contains("nginx_bin"), "{e}");
        let e = resolve_program("nginx", Some(Path::new("/nonexistent/nginx")), "nginx_bin")
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/nginx"), "{e}");
        let e = resolve_program("../x", None, "x_bin").unwrap_err();
        assert!(e.to_string().contains("bare file name"), "{e}");
        let e = resolve_program("gitmoor-no-such-program", None, "x_bin").unwrap_err();
        assert!(
            e.to_string().contains("install gitmoor-no-such-program"),
            "{e}"
        );
    }
}
