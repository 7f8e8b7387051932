//! What an `image:` may be: a Docker image reference, checked where the file is read.
//!
//! Why here: the name goes to dockerd in a URL path (`/images/<name>/json`, and the registry
//! lookups), and bollard joins that path as a URL: `../events?` would become `GET /events`, a
//! stream that never ends, and `../containers/<id>/export?` a whole filesystem read into memory.
//! A commit is hostile until checked, so a name that is not a reference is refused with the
//! file's line before anything is asked of dockerd.
//!
//! The grammar is the one of distribution's `reference` package (what `docker pull` accepts):
//! `[domain[:port]/]path[:tag][@algorithm:hex]`.

/// The longest name (domain and path) a reference may have.
const MAX_NAME: usize = 255;

/// Ok, or what is wrong with `image` as a reference (for the error message).
pub(crate) fn check_reference(image: &str) -> Result<(), String> {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        check_digest(d)?;
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        check_tag(t)?;
    }
    check_name(name)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it has no name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("its name is longer than {MAX_NAME} characters"));
    }
    // Docker reads 64 hex digits as an image id, never as a name.
    if name.len() == 64 && name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("64 hex digits are an image id, not a name".into());
    }
    if name.starts_with('[') {
        return Err(
            "a registry given by its IPv6 address is not supported; use a host name".into(),
        );
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry when it looks like a host (docker's rule).
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains(['.', ':']) || first == "localhost" || first != first.to_lowercase() {
            check_domain(first)?;
            parts.remove(0);
        }
    }
    for p in parts {
        if !is_path_component(p) {
            return Err(format!(
                "`{p}` is not a valid name part (lowercase letters and digits, joined by `.`, `_`, `__` or dashes)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or a run of `-`.
fn is_path_component(p: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = p.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let dashes = sep.bytes().all(|c| c == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

/// `host[:port]`: labels of letters, digits and inner dashes, joined by dots.
fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err(format!("`{d}` is not a valid registry host"));
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("`{d}` has a port that is not a number"));
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`.
fn check_tag(t: &str) -> Result<(), String> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{t}` is not a valid tag (letters, digits, `_`, `.` and `-`, at most 128)"
        ))
    }
}

/// `algorithm:hex` as dockerd accepts it: sha256, sha384 or sha512 with their length of
/// lowercase hex digits.
fn check_digest(d: &str) -> Result<(), String> {
    let bad = || format!("`{d}` is not a valid digest (sha256: and 64 lowercase hex digits)");
    let (algo, hex) = d.split_once(':').ok_or_else(bad)?;
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(bad()),
    };
    let hex_ok = hex.len() == len && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if hex_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::check_reference;

    const DIGEST: &str = "sha256:ec45a9388fa9210a7369332b853338c974702456d70a288b5d713abd2983b8b5";

    #[test]
    fn references_users_write_are_accepted() {
        for ok in [
            "postgres",
            "postgres:15",
            "postgres:15.4-alpine",
            "library/postgres:15",
            "docker.io/library/postgres:15",
            "ghcr.io/owner/app:v1.2.3",
            "127.0.0.1:5000/gmt/app:1",
            "localhost/app",
            "localhost:5000/app",
            "registry.example.fr:443/team/sub/app_name:latest",
            "my-app__x.y:1",
            "a--b",
            "Registry.Example.COM/app:1",
            "example-busybox:1",
        ] {
            assert_eq!(check_reference(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_reference(&format!("postgres@{DIGEST}")), Ok(()));
        assert_eq!(check_reference(&format!("postgres:15@{DIGEST}")), Ok(()));
        assert_eq!(
            check_reference(&format!("127.0.0.1:5000/gmt/app:pinned@{DIGEST}")),
            Ok(())
        );
    }

    #[test]
    fn names_that_would_reach_other_endpoints_are_refused() {
        for bad in [
            "../events?",
            "..",
            "../containers/db/export?",
            "../images/get?names=postgres&",
            "app/../../events",
            "app?x=1",
            "app#frag",
            "app/",
            "/app",
            "App:1",
            "app:1:2",
            "app name",
            "app%2e%2e",
            "app:-tag",
            "app@sha256:zz",
            "app@sha256:",
            ".app",
            "app.",
            "a..b",
            "a___b",
            "reg-.io/app",
            "reg.io:x/app",
            "",
        ] {
            assert!(check_reference(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_reference(&"a".repeat(256)).is_err());
        assert!(check_reference(&"ab12".repeat(16)).is_err(), "an image id");
        assert!(check_reference("[::1]:5000/app").is_err());
        // `a:1/b` is registry `a`, port 1, repository `b`.
        assert!(check_reference("a:1/b").is_ok());
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert!(check_reference(&format!("app@md5:{md5}")).is_err());
        assert!(check_reference(&format!("app@{}", DIGEST.to_uppercase())).is_err());
        assert!(check_reference(&format!("app@sha512:{}", "a".repeat(128))).is_ok());
        assert!(check_reference(&format!("app:{}", "t".repeat(129))).is_err());
    }
}
