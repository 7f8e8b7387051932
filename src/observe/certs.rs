//! The certificates certbot keeps for the sites with `tls: letsencrypt`: for a site's primary
//! name, `<config_dir>/live/<name>/fullchain.pem` and `privkey.pem`, whether both are there,
//! when the certificate ends and which names it covers. Read in process (see `x509`), so a
//! reconcile or a status refresh costs a few file reads, not one `openssl` per site.
//!
//! "Could not look" (a folder root cannot read, a name that is no lineage name) is
//! `Seen::NotObserved`, never "absent": absent means "ask for one", and asking again and again
//! for a certificate that exists would hit Let's Encrypt's rate limits.

mod x509;

pub use x509::CertInfo;

use super::Seen;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A `fullchain.pem` is a few KiB; a larger file is not one certbot wrote, and is not read
/// into memory whole.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The files of one certificate lineage, as Nginx's `ssl_certificate` and
/// `ssl_certificate_key` name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub fullchain: PathBuf,
    pub privkey: PathBuf,
}

/// One site's certificate as the host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertState {
    /// The lineage name: the site's first server name.
    pub name: String,
    /// Both `fullchain.pem` and `privkey.pem` exist.
    pub present: bool,
    /// The start of the certificate (`notBefore`), Unix seconds; None when absent or unreadable.
    pub not_before: Option<i64>,
    /// The end of the certificate (`notAfter`), Unix seconds; None when absent or unreadable.
    pub not_after: Option<i64>,
    /// The DNS names it covers; a site that lists a name it lacks needs a new certificate.
    pub names: Vec<String>,
    /// Why the files that are there could not be used (half a lineage, not a certificate).
    pub error: Option<String>,
}

impl CertState {
    /// Whole days left until the end (negative once expired); None without a readable end.
    pub fn days_left(&self, now: i64) -> Option<i64> {
        self.not_after.map(|t| (t - now).div_euclid(86_400))
    }

    /// Usable as is: present, readable, not expired, and covering every name in `names`.
    pub fn serves(&self, names: &[&str], now: i64) -> bool {
        self.present
            && self.error.is_none()
            && self.not_after.is_some_and(|t| t > now)
            && names.iter().all(|n| self.names.iter().any(|c| c == n))
    }

    /// Due when the time left is under `renew_days` (gitmoor's `letsencrypt.renew_days`) and
    /// under a third of the certificate's lifetime (certbot's own default). The third is what
    /// keeps a short-lived certificate (Let's Encrypt's 6-day and 45-day ones) from being due
    /// again the moment it is renewed, which would run certbot on every reconcile. Without a
    /// readable start, `renew_days` alone.
    pub fn due_for_renewal(&self, now: i64, renew_days: u32) -> bool {
        let Some(end) = self.not_after else {
            return false;
        };
        let mut window = i64::from(renew_days) * 86_400;
        if let Some(start) = self.not_before.filter(|s| *s < end) {
            window = window.min((end - start) / 3);
        }
        end - now < window
    }

    /// Ends within `warn_days` (`letsencrypt.warn_days`): a warning on `/status`.
    pub fn expiring_soon(&self, now: i64, warn_days: u32) -> bool {
        self.not_after
            .is_some_and(|t| t - now < i64::from(warn_days) * 86_400)
    }
}

/// Where certbot keeps the lineage `name` under `config_dir`.
pub fn cert_paths(config_dir: &Path, name: &str) -> CertPaths {
    let live = config_dir.join("live").join(name);
    CertPaths {
        fullchain: live.join("fullchain.pem"),
        privkey: live.join("privkey.pem"),
    }
}

/// A lineage name as it becomes a path: a DNS name (lowercase letters, digits, `-`, `.`), no
/// empty label, at most 253 bytes. Checked again here, whatever the site reader checked.
pub fn check_cert_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ok_labels = name
        .split('.')
        .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if name.is_empty() || !ok_chars || !ok_labels || name.len() > 253 {
        return Err(format!(
            "{name:?} is not a certificate name: a DNS name of lowercase letters, digits, `-` \
             and `.` is expected"
        ));
    }
    Ok(())
}

/// The certificate of lineage `name` under `config_dir`.
pub fn observe_cert(config_dir: &Path, name: &str) -> Seen<CertState> {
    if let Err(why) = check_cert_name(name) {
        return Seen::NotObserved(why);
    }
    let paths = cert_paths(config_dir, name);
    let mut state = CertState {
        name: name.to_string(),
        present: false,
        not_before: None,
        not_after: None,
        names: Vec::new(),
        error: None,
    };
    let key = match exists(&paths.privkey) {
        Ok(k) => k,
        Err(why) => return Seen::NotObserved(why),
    };
    let chain = match read_capped(&paths.fullchain) {
        Ok(c) => c,
        Err(why) => return Seen::NotObserved(why),
    };
    match (chain, key) {
        (None, false) => {}
        (None, true) => {
            state.error = Some(format!(
                "{} is missing beside its key; certbot will make the lineage again",
                paths.fullchain.display()
            ))
        }
        (Some(pem), key) => {
            state.present = key;
            if !key {
                state.error = Some(format!(
                    "{} is missing beside its certificate",
                    paths.privkey.display()
                ));
            }
            match x509::first_cert_der(&pem).and_then(|der| x509::cert_info(&der)) {
                Ok(info) => {
                    state.not_before = Some(info.not_before);
                    state.not_after = Some(info.not_after);
                    state.names = info.names;
                }
                Err(e) => state.error = Some(format!("{}: {e}", paths.fullchain.display())),
            }
        }
    }
    Seen::Observed(state)
}

/// [`observe_cert`] for each name.
pub fn observe_certs<'a>(
    config_dir: &Path,
    names: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Seen<CertState>> {
    names
        .into_iter()
        .map(|n| (n.to_string(), observe_cert(config_dir, n)))
        .collect()
}

/// `notAfter` and names of the first certificate in a PEM file (for a caller that has a path,
/// such as a renewal comparing before and after).
pub fn read_cert_file(path: &Path) -> Result<Option<CertInfo>, String> {
    match read_capped(path)? {
        None => Ok(None),
        Some(pem) => x509::first_cert_der(&pem)
            .and_then(|der| x509::cert_info(&der))
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
    }
}

/// Whether `path` exists (following links, as Nginx does); an error other than "not there"
/// (permission, a link loop) is an error.
fn exists(path: &Path) -> Result<bool, String> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot look at {}: {e}", path.display())),
    }
}

/// The text of a file of at most [`MAX_PEM_BYTES`]; None when it does not exist.
fn read_capped(path: &Path) -> Result<Option<String>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{} is larger than {MAX_PEM_BYTES} bytes: not a certificate certbot wrote",
            path.display()
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{} is not text (PEM)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!("certs/test_cert.pem");
    /// 2030-01-02T03:04:05Z, the end of `PEM`.
    const END: i64 = 1_893_553_445;

    fn lineage(dir: &Path, name: &str, chain: Option<&str>, key: bool) {
        let live = dir.join("live").join(name);
        std::fs::create_dir_all(&live).unwrap();
        if let Some(c) = chain {
            std::fs::write(live.join("fullchain.pem"), c).unwrap();
        }
        if key {
            std::fs::write(live.join("privkey.pem"), "key").unwrap();
        }
    }

    fn observed(s: Seen<CertState>) -> CertState {
        match s {
            Seen::Observed(s) => s,
            Seen::NotObserved(why) => panic!("not observed: {why}"),
        }
    }

    #[test]
    fn a_lineage_with_both_files_is_present_with_its_end_and_names() {
        let d = tempfile::tempdir().unwrap();
        lineage(d.path(), "api.example.test", Some(PEM), true);
        let s = observed(observe_cert(d.path(), "api.example.test"));
        assert!(s.present && s.error.is_none(), "{s:?}");
        assert_eq!(s.not_after, Some(END));
        assert!(s.serves(&["api.example.test", "www.example.test"], END - 1));
        assert!(!s.serves(&["api.example.test", "new.example.test"], END - 1));
        assert!(!s.serves(&["api.example.test"], END));
        assert_eq!(s.days_left(END - 10 * 86_400 - 5), Some(10));
        assert!(s.due_for_renewal(END - 29 * 86_400, 30));
        assert!(!s.due_for_renewal(END - 31 * 86_400, 30));
        assert!(s.expiring_soon(END - 13 * 86_400, 14));
        assert!(!s.expiring_soon(END - 15 * 86_400, 14));
    }

    fn lasting(issued: i64, days: i64) -> CertState {
        CertState {
            name: "a.test".into(),
            present: true,
            not_before: Some(issued),
            not_after: Some(issued + days * 86_400),
            names: vec!["a.test".into()],
            error: None,
        }
    }

    #[test]
    fn a_just_renewed_short_lived_certificate_is_not_due_whatever_renew_days_says() {
        let now = 1_800_000_000;
        for days in [6, 40, 45, 90] {
            let fresh = lasting(now, days);
            for renew_days in [1, 30, 50, 60] {
                assert!(
                    !fresh.due_for_renewal(now, renew_days),
                    "a {days}-day certificate renewed now, renew_days {renew_days}"
                );
            }
        }
        // Due once under a third of its lifetime is left (2 of 6 days; 40/3 days)...
        assert!(lasting(now - 4 * 86_400 - 1, 6).due_for_renewal(now, 30));
        assert!(!lasting(now - 4 * 86_400 + 60, 6).due_for_renewal(now, 30));
        assert!(lasting(now - 27 * 86_400, 40).due_for_renewal(now, 50));
        assert!(!lasting(now - 26 * 86_400, 40).due_for_renewal(now, 50));
        // ...or under renew_days, when that is the shorter: 90 days, renew_days 10.
        assert!(!lasting(now - 79 * 86_400, 90).due_for_renewal(now, 10));
        assert!(lasting(now - 81 * 86_400, 90).due_for_renewal(now, 10));
        // Without a readable start, renew_days alone.
        let mut no_start = lasting(now - 30 * 86_400, 40);
        no_start.not_before = None;
        assert!(no_start.due_for_renewal(now, 11));
    }

    #[test]
    fn no_lineage_is_observed_absent() {
        let d = tempfile::tempdir().unwrap();
        let s = observed(observe_cert(d.path(), "api.example.test"));
        assert!(
            !s.present && s.not_after.is_none() && s.error.is_none(),
            "{s:?}"
        );
    }

    #[test]
    fn half_a_lineage_or_a_broken_file_says_why() {
        let d = tempfile::tempdir().unwrap();
        lineage(d.path(), "a.test", Some(PEM), false);
        let s = observed(observe_cert(d.path(), "a.test"));
        assert!(!s.present, "{s:?}");
        assert!(s.error.as_deref().unwrap().contains("privkey.pem"), "{s:?}");
        lineage(d.path(), "b.test", None, true);
        let s = observed(observe_cert(d.path(), "b.test"));
        assert!(
            s.error.as_deref().unwrap().contains("fullchain.pem"),
            "{s:?}"
        );
        lineage(d.path(), "c.test", Some("garbage"), true);
        let s = observed(observe_cert(d.path(), "c.test"));
        assert!(s.present && s.not_after.is_none(), "{s:?}");
        assert!(
            s.error.as_deref().unwrap().contains("BEGIN CERTIFICATE"),
            "{s:?}"
        );
        assert!(!s.serves(&["c.test"], 0));
    }

    #[test]
    fn a_name_that_is_no_dns_name_or_an_unreadable_file_is_not_observed() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["../etc", "a/b", "", ".a", "A.test", "a..b", "-a.test"] {
            assert!(
                matches!(observe_cert(d.path(), bad), Seen::NotObserved(_)),
                "{bad}"
            );
        }
        // A fullchain.pem that is a folder cannot be read: not "absent".
        let live = d.path().join("live/x.test");
        std::fs::create_dir_all(live.join("fullchain.pem")).unwrap();
        assert!(matches!(
            observe_cert(d.path(), "x.test"),
            Seen::NotObserved(_)
        ));
    }
}
