//! The three nginx calls gitmoor makes: `nginx -t` (test the whole config), `nginx -T` (is the
//! sites folder included at all?) and the reload. Through [`crate::process`] only: argv, a
//! timeout, stderr captured and redacted.

use crate::config::nginx::NginxConfig;
use crate::process::{resolve_program, Failure, Process, ProcessError};
use crate::redact::Redactor;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most of `nginx -T`'s dump kept (a host's whole config; far above any real one).
const DUMP_CAP: usize = 32 << 20;

/// How to run the host's nginx.
#[derive(Debug, Clone)]
pub struct Ctl {
    program: PathBuf,
    base_args: Vec<OsString>,
    /// Program and arguments of the reload.
    reload: (PathBuf, Vec<OsString>),
    timeout: Duration,
    redact: Redactor,
}

/// Why `nginx -t` did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestFailure {
    /// nginx ran and rejected the config: its own message (redacted), one line per problem.
    Rejected(String),
    /// nginx could not be run, or did not finish: nothing is known about the config.
    CannotRun(String),
}

impl Ctl {
    /// Resolves the binaries now, so a missing nginx is one clear error naming the setting.
    pub fn new(cfg: &NginxConfig, redact: Redactor) -> Result<Ctl, ProcessError> {
        let program = resolve_program("nginx", cfg.binary.as_deref(), "nginx.binary")?;
        let base_args = cfg.base_args();
        let reload = match &cfg.reload {
            Some(argv) if !argv.is_empty() => {
                let p = resolve_program("reload", Some(Path::new(&argv[0])), "nginx.reload[0]")?;
                (p, argv[1..].iter().map(OsString::from).collect())
            }
            _ => {
                let mut args = base_args.clone();
                args.extend(["-s", "reload"].map(OsString::from));
                (program.clone(), args)
            }
        };
        Ok(Ctl {
            program,
            base_args,
            reload,
            timeout: Duration::from_secs(cfg.test_timeout_secs),
            redact,
        })
    }

    fn nginx(&self, extra: &[&str]) -> Process {
        Process::new(&self.program)
            .args(&self.base_args)
            .args(extra)
            .timeout(self.timeout)
    }

    /// `nginx -t -q`: the whole config, as a reload would load it.
    pub async fn test(&self) -> Result<(), TestFailure> {
        match self.nginx(&["-t", "-q"]).run(&self.redact).await {
            Ok(out) => {
                if !out.stderr.trim().is_empty() {
                    tracing::warn!(nginx = %out.stderr.trim(), "nginx -t passed with warnings");
                }
                Ok(())
            }
            Err(e) => Err(match e.failure {
                Failure::Exit(_) if !e.stderr.trim().is_empty() => {
                    TestFailure::Rejected(nginx_message(&e.stderr))
                }
                _ => TestFailure::CannotRun(e.to_string()),
            }),
        }
    }

    /// Whether the config nginx loads includes `file` (from `nginx -T`'s
    /// `# configuration file <path>:` lines). Without the include line, every site would pass
    /// the test and never be served.
    pub async fn includes(&self, file: &Path) -> Result<bool, String> {
        let out = self
            .nginx(&["-T", "-q"])
            // The whole config, every file: a big host's dump must not be cut before our line.
            .output_cap(DUMP_CAP)
            .run(&self.redact)
            .await
            .map_err(|e| e.to_string())?;
        let marker = format!("# configuration file {}:", file.display());
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == marker))
    }

    /// Tells the running nginx to load the config (it keeps the old one if that fails).
    pub async fn reload(&self) -> Result<(), String> {
        Process::new(&self.reload.0)
            .args(&self.reload.1)
            .timeout(self.timeout)
            .run(&self.redact)
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "{e}; the sites are back as they were; is nginx running? \
                     (start it, or set nginx.reload)"
                )
            })
    }
}

/// nginx's stderr as one line per problem, without the closing "test failed" line that
/// repeats the main config's path.
fn nginx_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with("test failed"))
        .collect();
    if lines.is_empty() {
        stderr.trim().to_string()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_keeps_nginxs_lines_without_the_test_failed_line() {
        let stderr = "nginx: [emerg] host not found in upstream \"nowhere\" in /x/b.conf:4\n\
                      nginx: configuration file /x/nginx.conf test failed\n";
        assert_eq!(
            nginx_message(stderr),
            "nginx: [emerg] host not found in upstream \"nowhere\" in /x/b.conf:4"
        );
    }
}
