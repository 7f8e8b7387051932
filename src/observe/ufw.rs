//! The host's UFW as it is, and what the SSH lockout guard needs to know about the host: its
//! SSH port and the addresses with an SSH session open now. The parsing is in `ufw_parse`
//! (pure); here are the reads and the process calls (argv only, through `process`).
//!
//! Every failure is `NotObserved` (or an error) rather than an empty answer: "could not look"
//! must never plan "delete every rule", and an unreadable session table must never let the
//! guard pass.

use super::ufw_parse::{
    forward_starts_with_docker_user, parse_default_file, parse_proc_net_tcp_peers,
    parse_rules_files, parse_status_enabled, DockerUserSeen, ObservedFirewall,
};
use super::Seen;
use crate::config::firewall::FirewallConfig;
use crate::process::{resolve_program, Process, ProcessError};
use crate::redact::Redactor;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The rules files and `/etc/default/ufw` are small (one line per rule, at most a few thousand
/// rules); a bigger one is not ufw's and is not read into memory.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// The ufw binary the config names, or `ufw` from `PATH`.
pub fn ufw_program(cfg: &FirewallConfig) -> Result<PathBuf, ProcessError> {
    resolve_program("ufw", cfg.binary.as_deref(), "firewall.binary")
}

/// `ufw <args>` with the config's timeout, `LC_ALL=C` (ufw's messages are translated, and the
/// parser reads the English ones).
pub fn ufw_call(program: &Path, cfg: &FirewallConfig, args: &[String]) -> Process {
    Process::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .timeout(Duration::from_secs(cfg.timeout_secs))
}

/// UFW as it is: the rules of `user.rules` and `user6.rules`, the defaults and `IPV6=` of the
/// default file, and on/off from `ufw status`.
pub async fn observe_firewall(cfg: &FirewallConfig, redact: &Redactor) -> Seen<ObservedFirewall> {
    match read_firewall(cfg, redact).await {
        Ok(f) => Seen::Observed(f),
        Err(why) => Seen::NotObserved(why),
    }
}

async fn read_firewall(
    cfg: &FirewallConfig,
    redact: &Redactor,
) -> Result<ObservedFirewall, String> {
    let program = ufw_program(cfg).map_err(|e| e.to_string())?;
    let v4 = read_small(&cfg.etc_dir.join("user.rules"))?;
    let v6 = read_small(&cfg.etc_dir.join("user6.rules"))?;
    let default = read_small(&cfg.default_file)?;
    let out = ufw_call(&program, cfg, &["status".to_string()])
        .run(redact)
        .await
        .map_err(|e| e.to_string())?;
    let enabled = parse_status_enabled(&String::from_utf8_lossy(&out.stdout))?;
    let (defaults, ipv6) = parse_default_file(&default);
    Ok(ObservedFirewall {
        enabled,
        defaults,
        ipv6,
        rules: parse_rules_files(&v4, &v6),
        docker_user: read_docker_user(cfg, redact).await?,
    })
}

/// The Docker guard's files (`after.rules`, `after6.rules`) and the live `DOCKER-USER` chains.
async fn read_docker_user(
    cfg: &FirewallConfig,
    redact: &Redactor,
) -> Result<DockerUserSeen, String> {
    let mut seen = DockerUserSeen::default();
    for (i, name) in ["after.rules", "after6.rules"].into_iter().enumerate() {
        let path = cfg.etc_dir.join(name);
        seen.after_files[i] = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            _ => Some(read_small(&path)?),
        };
    }
    for (i, (tool, configured, key)) in [
        (
            "iptables",
            cfg.iptables_binary.as_deref(),
            "firewall.iptables_binary",
        ),
        (
            "ip6tables",
            cfg.ip6tables_binary.as_deref(),
            "firewall.ip6tables_binary",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        match docker_user_chain(tool, configured, key, cfg, redact).await {
            Ok(lines) => seen.chains[i] = Some(lines),
            Err(e) => seen.chain_errors.push(e),
        }
        if let Ok(lines) = iptables_list(tool, configured, key, "FORWARD", cfg, redact).await {
            seen.forward_jump_first[i] = Some(forward_starts_with_docker_user(&lines));
        }
    }
    Ok(seen)
}

/// The rules of `DOCKER-USER` (`<tool> -w -S DOCKER-USER`): empty when the chain is not there
/// (the call fails: iptables says so in words that vary with its backend); an error when the
/// tool cannot be run at all.
pub async fn docker_user_chain(
    tool: &str,
    configured: Option<&Path>,
    key: &str,
    cfg: &FirewallConfig,
    redact: &Redactor,
) -> Result<Vec<String>, String> {
    iptables_list(tool, configured, key, "DOCKER-USER", cfg, redact).await
}

/// The rules of `chain` of the filter table (`<tool> -w 5 -S <chain>`); empty when it is not
/// there, which iptables says in words ([`is_no_such_chain`]). Any other failure is an error,
/// never an empty chain: exit 4 is the xtables lock held by another tool past the wait, and
/// read as "flushed" it would have the guard's repair reload UFW for nothing (a reload is a
/// disable and an enable).
pub async fn iptables_list(
    tool: &str,
    configured: Option<&Path>,
    key: &str,
    chain: &str,
    cfg: &FirewallConfig,
    redact: &Redactor,
) -> Result<Vec<String>, String> {
    let program = resolve_program(tool, configured, key).map_err(|e| e.to_string())?;
    let run = Process::new(&program)
        .args(["-w", "5", "-S", chain])
        .env("LC_ALL", "C")
        .timeout(Duration::from_secs(cfg.timeout_secs))
        .run(redact)
        .await;
    match run {
        Ok(out) => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()),
        Err(e)
            if matches!(e.failure, crate::process::Failure::Exit(_))
                && is_no_such_chain(&e.stderr) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(format!("{}: {e}", program.display())),
    }
}

/// Whether iptables' stderr says the chain is not there: "No chain/target/match by that
/// name" (legacy and nft backends, `LC_ALL=C`), or nft's "does not exist".
pub fn is_no_such_chain(stderr: &str) -> bool {
    stderr.contains("No chain/target/match by that name") || stderr.contains("does not exist")
}

/// A file of ufw's, whole; an error names it and says what to check.
fn read_small(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; is ufw installed (firewall.etc_dir, firewall.default_file)?",
            path.display()
        )
    })?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes: not a file ufw wrote",
            path.display()
        ));
    }
    Ok(text)
}

/// The SSH sessions open now, each as (peer address, local SSH port), IPv4 and IPv6, from
/// `/proc/net/tcp` and `/proc/net/tcp6` (the network namespace gitmoor runs in). An error when
/// neither can be read: the guard then cannot know who is connected.
pub fn ssh_peers(ports: &[u16]) -> Result<Vec<(IpAddr, u16)>, String> {
    ssh_peers_in(Path::new("/proc/net"), ports)
}

/// [`ssh_peers`] reading `<dir>/tcp` and `<dir>/tcp6`.
pub fn ssh_peers_in(dir: &Path, ports: &[u16]) -> Result<Vec<(IpAddr, u16)>, String> {
    let mut peers: Vec<(IpAddr, u16)> = Vec::new();
    let mut read_any = false;
    let mut errors = Vec::new();
    for name in ["tcp", "tcp6"] {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                read_any = true;
                for p in parse_proc_net_tcp_peers(&text, ports) {
                    if !peers.contains(&p) {
                        peers.push(p);
                    }
                }
            }
            // No IPv6 in the kernel: no IPv6 sessions either.
            Err(e) if name == "tcp6" && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    if !read_any || !errors.is_empty() {
        return Err(format!(
            "cannot list the established SSH sessions ({}), so the lockout guard cannot tell who \
             is connected",
            errors.join("; ")
        ));
    }
    Ok(peers)
}

/// The SSH ports the guard keeps open: the config's `firewall.ssh_port`, else every `port N`
/// line of `sshd -T` (sshd listens on each; an admin may use any). An error when sshd cannot
/// be asked or lists none: a port assumed could be the wrong one (the guard would watch 22
/// while the admins are on another), so the plan and the apply both refuse to judge, the same
/// way, and the error names the setting that fixes it.
pub async fn ssh_ports(cfg: &FirewallConfig, redact: &Redactor) -> Result<Vec<u16>, String> {
    if let Some(p) = cfg.ssh_port {
        return Ok(vec![p]);
    }
    let unknown = |why: String| {
        format!("the SSH port is not known ({why}); set firewall.ssh_port in gitmoor's config")
    };
    let program = resolve_program("sshd", cfg.sshd_binary.as_deref(), "firewall.sshd_binary")
        .map_err(|e| unknown(e.to_string()))?;
    let out = Process::new(&program)
        .arg("-T")
        .env("LC_ALL", "C")
        .timeout(Duration::from_secs(cfg.timeout_secs))
        .run(redact)
        .await
        .map_err(|e| unknown(e.to_string()))?;
    let ports = parse_sshd_ports(&String::from_utf8_lossy(&out.stdout));
    if ports.is_empty() {
        return Err(unknown(format!(
            "`{} -T` printed no `port` line",
            program.display()
        )));
    }
    Ok(ports)
}

/// Every `port N` line of `sshd -T`, and the port of every `listenaddress HOST:PORT` line
/// (a `ListenAddress 0.0.0.0:2222` in sshd_config listens there, whatever `Port` says), in
/// their order, once each. Not seen: an sshd started by socket activation (`ssh.socket`,
/// Ubuntu 22.10 and later), whose port is systemd's `ListenStream`; docs/firewall.md says to
/// set `firewall.ssh_port` there.
pub fn parse_sshd_ports(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut words = l.split_whitespace();
        let port = match words.next() {
            Some(w) if w.eq_ignore_ascii_case("port") => words.next(),
            Some(w) if w.eq_ignore_ascii_case("listenaddress") => {
                words.next().and_then(listen_address_port)
            }
            _ => None,
        };
        let Some(p) = port.and_then(|w| w.parse::<u16>().ok()) else {
            continue;
        };
        if p != 0 && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The port of a `listenaddress` value: `0.0.0.0:22`, `[::]:22`, `host:22`; None for an
/// address without one (a bare IPv6 address has colons of its own).
fn listen_address_port(value: &str) -> Option<&str> {
    // `rdomain` and the like follow after a space; the value is the first word.
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once("]:").map(|(_, p)| p);
    }
    match value.split_once(':') {
        Some((_, p)) if !p.contains(':') => Some(p),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_line_of_sshd_t_is_an_ssh_port() {
        let t = "port 2222\nport 22\naddressfamily any\nport 2222\nlistenaddress [::]:2222\n";
        assert_eq!(parse_sshd_ports(t), vec![2222, 22]);
        assert!(parse_sshd_ports("addressfamily any\n").is_empty());
        assert!(parse_sshd_ports("port x\nport 0\n").is_empty());
        assert!(parse_sshd_ports("ports 9\n").is_empty());
    }

    #[test]
    fn a_listen_address_with_a_port_is_an_ssh_port() {
        let t = "port 22\nlistenaddress 0.0.0.0:2222\nlistenaddress [::]:2223\nlistenaddress [::1]:22\nListenAddress 192.0.2.1:2224 rdomain x\nlistenaddress ::1\nlistenaddress host.example:x\n";
        assert_eq!(parse_sshd_ports(t), vec![22, 2222, 2223, 2224]);
    }

    #[test]
    fn only_a_missing_chain_reads_as_empty() {
        assert!(is_no_such_chain(
            "iptables: No chain/target/match by that name.\n"
        ));
        assert!(!is_no_such_chain(
            "Another app is currently holding the xtables lock. Stopped waiting after 5s.\n"
        ));
    }

    /// iptables failing for a lock (exit 4) is an error, never an empty chain; a missing chain
    /// is empty.
    #[tokio::test]
    async fn a_locked_table_is_an_error_not_an_empty_chain() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("iptables");
        let write = |body: &str| {
            std::fs::write(&tool, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let cfg = FirewallConfig::default();
        let redact = Redactor::default();
        let list = || iptables_list("iptables", Some(&tool), "k", "DOCKER-USER", &cfg, &redact);
        write("echo 'Another app is currently holding the xtables lock.' >&2; exit 4");
        let err = list().await.unwrap_err();
        assert!(err.contains("xtables lock"), "{err}");
        write("echo 'iptables: No chain/target/match by that name.' >&2; exit 1");
        assert_eq!(list().await, Ok(Vec::new()));
    }

    #[test]
    fn sessions_come_from_both_tables_and_an_unreadable_table_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        // 192.0.2.1:22 <- 192.0.2.3:40000, established (01), little-endian words.
        std::fs::write(
            dir.path().join("tcp"),
            format!("{head}   0: 010200C0:0016 030200C0:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1\n"),
        )
        .unwrap();
        let peers = ssh_peers_in(dir.path(), &[2222, 22]).unwrap();
        assert_eq!(peers, vec![("192.0.2.3".parse::<IpAddr>().unwrap(), 22)]);
        assert!(ssh_peers_in(dir.path(), &[2222]).unwrap().is_empty());
        let err = ssh_peers_in(&dir.path().join("none"), &[22]).unwrap_err();
        assert!(err.contains("lockout guard"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_ufw_is_not_observed_rather_than_empty() {
        let cfg = FirewallConfig {
            binary: Some("/nonexistent/ufw".into()),
            ..FirewallConfig::default()
        };
        match observe_firewall(&cfg, &Redactor::default()).await {
            Seen::NotObserved(why) => assert!(why.contains("firewall.binary"), "{why}"),
            Seen::Observed(f) => panic!("observed {f:?}"),
        }
    }

    #[tokio::test]
    async fn the_configured_ssh_port_wins_and_a_missing_sshd_is_an_error_naming_the_setting() {
        let cfg = FirewallConfig {
            ssh_port: Some(2200),
            ..FirewallConfig::default()
        };
        assert_eq!(ssh_ports(&cfg, &Redactor::default()).await, Ok(vec![2200]));
        let cfg = FirewallConfig {
            sshd_binary: Some("/nonexistent/sshd".into()),
            ..FirewallConfig::default()
        };
        let err = ssh_ports(&cfg, &Redactor::default()).await.unwrap_err();
        assert!(err.contains("set firewall.ssh_port"), "{err}");
    }

    /// sshd listing two ports: both are guarded (a script standing in for `sshd -T`).
    #[tokio::test]
    async fn every_port_sshd_lists_is_asked_of_sshd() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sshd = dir.path().join("sshd");
        std::fs::write(
            &sshd,
            "#!/bin/sh\nprintf 'port 22\\nport 2222\\naddressfamily any\\n'\n",
        )
        .unwrap();
        std::fs::set_permissions(&sshd, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = FirewallConfig {
            sshd_binary: Some(sshd.clone()),
            ..FirewallConfig::default()
        };
        assert_eq!(
            ssh_ports(&cfg, &Redactor::default()).await,
            Ok(vec![22, 2222])
        );
        std::fs::write(&sshd, "#!/bin/sh\nexit 255\n").unwrap();
        let err = ssh_ports(&cfg, &Redactor::default()).await.unwrap_err();
        assert!(err.contains("the SSH port is not known"), "{err}");
    }
}
