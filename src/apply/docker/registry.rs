//! Registry credentials, kept outside Git in a file of docker's `config.json` format:
//!
//! ```json
//! {"auths": {"registry.example.com:5000": {"auth": "<base64 of user:password>"},
//!            "ghcr.io": {"username": "bot", "password": "…"}}}
//! ```
//!
//! (`docker --config DIR login` writes exactly such a file.) Passwords are held, sent to the
//! engine in the `X-Registry-Auth` header, and never printed: `Debug` shows the hosts only, and no
//! error carries a password or a token.

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// Docker Hub's key in a config.json `auths` map, and what the engine looks up for it.
pub const DOCKER_HUB_INDEX: &str = "https://index.docker.io/v1/";

/// Credentials for image registries, by registry host (`host[:port]`, `docker.io` for Hub).
#[derive(Clone)]
pub struct RegistryAuth {
    path: PathBuf,
    entries: BTreeMap<String, Credential>,
    /// The file names a credential helper (`credsStore`/`credHelpers`), which gitmoor does not run.
    helpers: bool,
}

#[derive(Clone)]
struct Credential {
    username: Option<String>,
    password: Option<String>,
    identity_token: Option<String>,
    registry_token: Option<String>,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("path", &self.path)
            .field("hosts", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RegistryAuth {
    /// Reads a config.json-style credentials file. Errors name the file and the entry, never a
    /// value. A file others may read is accepted with a warning.
    pub fn load(path: &Path) -> anyhow::Result<RegistryAuth> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow!(
                "registry credentials file {} cannot be read: {e}",
                path.display()
            )
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        file = %path.display(),
                        "registry credentials file is readable by other users; chmod 600 it"
                    );
                }
            }
        }
        RegistryAuth::parse(&text, path)
    }

    /// Parses the file's text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<RegistryAuth> {
        let shown = path.display();
        // Parsed as an untyped value first: a typed error could quote a value (a password).
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            anyhow!(
                "registry credentials file {shown}: not valid JSON (line {}, column {}); \
                 expected docker's config.json format {{\"auths\": {{\"host:port\": {{\"auth\": \
                 \"<base64 of user:password>\"}}}}}}",
                e.line(),
                e.column()
            )
        })?;
        let Some(root) = value.as_object() else {
            bail!(
                "registry credentials file {shown}: expected a JSON object with an \"auths\" map"
            );
        };
        let helpers = root.contains_key("credsStore") || root.contains_key("credHelpers");
        let mut entries = BTreeMap::new();
        if let Some(auths) = root.get("auths") {
            let Some(auths) = auths.as_object() else {
                bail!("registry credentials file {shown}: \"auths\" must be a map of registry host to credentials");
            };
            for (key, entry) in auths {
                let host = normalize_host(key);
                let credential = parse_entry(entry).map_err(|why| {
                    anyhow!("registry credentials file {shown}: auths.{key:?}: {why}")
                })?;
                if let Some(c) = credential {
                    entries.insert(host, c);
                }
            }
        } else if !helpers {
            bail!("registry credentials file {shown}: no \"auths\" map");
        }
        Ok(RegistryAuth {
            path: path.to_path_buf(),
            entries,
            helpers,
        })
    }

    /// The file the credentials came from (for messages: "add credentials to <file>").
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The registry hosts with credentials, normalized (`docker.io` for Docker Hub).
    pub fn hosts(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The user name for a host, for messages (never the password).
    pub fn username_for(&self, host: &str) -> Option<&str> {
        self.entries
            .get(&normalize_host(host))
            .and_then(|c| c.username.as_deref())
    }

    /// Credentials for one registry host (`host[:port]`; Hub as `docker.io`).
    pub fn credentials_for(&self, host: &str) -> Option<DockerCredentials> {
        let host = normalize_host(host);
        self.entries.get(&host).map(|c| c.to_docker(&host))
    }

    /// Credentials for an image reference's registry.
    pub fn credentials_for_image(&self, image: &str) -> Option<DockerCredentials> {
        self.credentials_for(&registry_host(image))
    }

    /// Every credential, keyed as the engine's build call looks them up (`X-Registry-Config`):
    /// `host[:port]`, and Docker Hub under its index URL.
    pub fn credentials_map(&self) -> HashMap<String, DockerCredentials> {
        self.entries
            .iter()
            .map(|(host, c)| {
                let key = if host == "docker.io" {
                    DOCKER_HUB_INDEX.to_string()
                } else {
                    host.clone()
                };
                (key, c.to_docker(host))
            })
            .collect()
    }

    /// True when the file names a credential helper (`credsStore`, `credHelpers`): gitmoor runs no
    /// helper, so those registries need an inline entry.
    pub fn uses_helpers(&self) -> bool {
        self.helpers
    }
}

impl Credential {
    fn to_docker(&self, host: &str) -> DockerCredentials {
        let serveraddress = if host == "docker.io" {
            DOCKER_HUB_INDEX.to_string()
        } else {
            host.to_string()
        };
        DockerCredentials {
            username: self.username.clone(),
            password: self.password.clone(),
            identitytoken: self.identity_token.clone(),
            registrytoken: self.registry_token.clone(),
            serveraddress: Some(serveraddress),
            ..Default::default()
        }
    }
}

/// One `auths` entry. Ok(None) for an empty entry (`{}`, as `docker login` leaves with a
/// credential helper). The error text never holds a value.
fn parse_entry(entry: &serde_json::Value) -> Result<Option<Credential>, String> {
    let Some(obj) = entry.as_object() else {
        return Err("expected an object with \"auth\" or \"username\" and \"password\"".into());
    };
    let field = |name: &str| -> Result<Option<String>, String> {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{name:?} must be a string")),
        }
    };
    let mut username = field("username")?;
    let mut password = field("password")?;
    let identity_token = field("identitytoken")?;
    let registry_token = field("registrytoken")?;
    if let Some(auth) = field("auth")? {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.trim()))
            .map_err(|_| {
                "\"auth\" is not base64 (it must be base64 of user:password)".to_string()
            })?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| "\"auth\" does not decode to text (user:password)".to_string())?;
        let Some((user, pass)) = decoded.split_once(':') else {
            return Err("\"auth\" must be base64 of user:password (no ':' found)".into());
        };
        username = Some(user.to_string());
        password = Some(pass.to_string());
    }
    if username.is_none()
        && password.is_none()
        && identity_token.is_none()
        && registry_token.is_none()
    {
        return Ok(None);
    }
    if identity_token.is_none() && registry_token.is_none() {
        if username.is_none() {
            return Err("a password without a \"username\"".into());
        }
        if password.is_none() {
            return Err("a \"username\" without a \"password\"".into());
        }
    }
    Ok(Some(Credential {
        username,
        password,
        identity_token,
        registry_token,
    }))
}

/// An `auths` key or a host as docker's `ConvertToHostname` reads it: scheme and path dropped;
/// Docker Hub's names all become `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// The registry host of an image reference, as docker reads it: the first path component when it
/// looks like a host (has a `.` or a `:`, or is `localhost`), else Docker Hub (`docker.io`).
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalize_host(first)
        }
        _ => "docker.io".to_string(),
    }
}

/// The repository of a reference in docker's short ("familiar") form, without tag or digest:
/// `docker.io/library/nginx:1` → `nginx`, `127.0.0.1:5000/team/app:2` → `127.0.0.1:5000/team/app`.
pub fn familiar_repo(image: &str) -> String {
    let without_digest = image.split_once('@').map_or(image, |(r, _)| r);
    let name_start = without_digest.rfind('/').map_or(0, |i| i + 1);
    let repo = match without_digest[name_start..].rfind(':') {
        Some(i) => &without_digest[..name_start + i],
        None => without_digest,
    };
    let host = registry_host(repo);
    if host == "docker.io" {
        let path = match repo.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                rest
            }
            _ => repo,
        };
        path.strip_prefix("library/").unwrap_or(path).to_string()
    } else {
        repo.to_string()
    }
}

/// True when the local image's repo digests (`RepoDigests`, `repo@sha256:…`) hold
/// `remote_digest` for the repository of `image`: the tag has not moved on the registry since
/// the image was pulled (or pushed). False when the local image has no digest for that
/// repository (built locally, or never pulled from there).
pub fn local_digest_matches(image: &str, repo_digests: &[String], remote_digest: &str) -> bool {
    let repo = familiar_repo(image);
    repo_digests.iter().any(|rd| {
        rd.split_once('@')
            .is_some_and(|(r, d)| d == remote_digest && familiar_repo(r) == repo)
    })
}

/// The error for a pull or inspect the registry refused for want of credentials, or None when
/// the engine's message is about something else.
pub(crate) fn auth_error(
    image: &str,
    message: &str,
    auth: Option<&RegistryAuth>,
    had_credentials: bool,
) -> Option<anyhow::Error> {
    let m = message.to_ascii_lowercase();
    let refused = m.contains("no basic auth credentials")
        || m.contains("unauthorized")
        || m.contains("authentication required")
        || m.contains("may require 'docker login'")
        || m.contains("denied");
    if !refused {
        return None;
    }
    let host = registry_host(image);
    let key = if host == "docker.io" {
        DOCKER_HUB_INDEX.to_string()
    } else {
        host.clone()
    };
    Some(match (auth, had_credentials) {
        (Some(a), true) => anyhow!(
            "registry {host} refused the credentials for user {} from {} for image {image}: {message}; \
             fix the \"{key}\" entry there",
            a.username_for(&host).unwrap_or("(token)"),
            a.path().display()
        ),
        (Some(a), false) => {
            let helper = if a.uses_helpers() {
                " (credential helpers named there are not run by gitmoor: put the credentials inline)"
            } else {
                ""
            };
            anyhow!(
                "registry {host} wants credentials for image {image} and {} has none for it: add \
                 an entry for \"{key}\" to {}{helper} (docker config.json format: {{\"auths\": \
                 {{\"{key}\": {{\"auth\": \"<base64 of user:password>\"}}}}}}) ({message})",
                a.path().display(),
                a.path().display()
            )
        }
        (None, _) => anyhow!(
            "registry {host} wants credentials for image {image} and none are configured: name a \
             credentials file in the config (`registry_auth: /etc/gitmoor/registry-auth.json`, \
             docker config.json format) with an entry for \"{key}\" ({message})"
        ),
    })
}

/// Reads a credentials file if a path is given (a convenience for callers with an optional
/// config key).
pub fn load_optional(path: Option<&Path>) -> anyhow::Result<Option<RegistryAuth>> {
    path.map(|p| RegistryAuth::load(p).context("loading registry credentials"))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_auth_and_username_password_entries() {
        let text = format!(
            r#"{{"auths": {{
                "127.0.0.1:5000": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"username": "hub", "password": "pw:with:colons"}},
                "https://ghcr.io": {{"auth": "{}"}},
                "helper.example": {{}}
            }}, "credsStore": "desktop"}}"#,
            b64("test:secret"),
            b64("bot:tok:en")
        );
        let a = RegistryAuth::parse(&text, Path::new("/etc/gitmoor/auth.json")).unwrap();
        assert_eq!(a.hosts(), vec!["127.0.0.1:5000", "docker.io", "ghcr.io"]);
        let c = a.credentials_for_image("127.0.0.1:5000/test/bb:1").unwrap();
        assert_eq!(c.username.as_deref(), Some("test"));
        assert_eq!(c.password.as_deref(), Some("secret"));
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));
        let hub = a.credentials_for_image("nginx:1.27").unwrap();
        assert_eq!(hub.password.as_deref(), Some("pw:with:colons"));
        assert_eq!(hub.serveraddress.as_deref(), Some(DOCKER_HUB_INDEX));
        let gh = a.credentials_for_image("ghcr.io/acme/api").unwrap();
        assert_eq!(
            gh.password.as_deref(),
            Some("tok:en"),
            "split at the first ':'"
        );
        assert!(a.credentials_for_image("quay.io/x/y").is_none());
        assert!(a.uses_helpers());
        assert!(a.credentials_map().contains_key(DOCKER_HUB_INDEX));
        let debug = format!("{a:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("pw:"),
            "{debug}"
        );
    }

    #[test]
    fn errors_name_the_entry_never_a_value() {
        let p = Path::new("auth.json");
        let e = RegistryAuth::parse(r#"{"auths": {"r.io": {"auth": "!!hunter2!!"}}}"#, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.json") && e.contains("\"r.io\"") && e.contains("not base64"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = RegistryAuth::parse(
            r#"{"auths": {"r.io": {"username": "u", "password": 5}}}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"password\" must be a string"), "{e}");
        let e = RegistryAuth::parse(r#"{"auths": {"r.io": {"auth": "hunter2"#, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not valid JSON") && !e.contains("hunter2"),
            "{e}"
        );
        let no_colon = format!(
            r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
            b64("hunter2")
        );
        let e = RegistryAuth::parse(&no_colon, p).unwrap_err().to_string();
        assert!(e.contains("user:password") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn hosts_of_references() {
        assert_eq!(registry_host("nginx"), "docker.io");
        assert_eq!(registry_host("acme/api:1"), "docker.io");
        assert_eq!(registry_host("docker.io/library/nginx"), "docker.io");
        assert_eq!(registry_host("localhost/app"), "localhost");
        assert_eq!(registry_host("127.0.0.1:5000/test/bb:1"), "127.0.0.1:5000");
        assert_eq!(
            registry_host("Registry.Example.com/a"),
            "registry.example.com"
        );
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("http://r.local:5000/v2/"), "r.local:5000");
    }

    #[test]
    fn digests_compare_per_repository() {
        let local = vec![
            "127.0.0.1:5000/test/bb@sha256:aaa".to_string(),
            "nginx@sha256:bbb".to_string(),
        ];
        assert!(local_digest_matches(
            "127.0.0.1:5000/test/bb:1",
            &local,
            "sha256:aaa"
        ));
        assert!(!local_digest_matches(
            "127.0.0.1:5000/test/bb:1",
            &local,
            "sha256:ccc"
        ));
        assert!(!local_digest_matches(
            "127.0.0.1:5000/test/other:1",
            &local,
            "sha256:aaa"
        ));
        assert!(local_digest_matches(
            "docker.io/library/nginx:1.27",
            &local,
            "sha256:bbb"
        ));
        assert!(local_digest_matches("nginx", &local, "sha256:bbb"));
        assert!(!local_digest_matches("nginx", &[], "sha256:bbb"));
        assert_eq!(familiar_repo("docker.io/acme/api:2"), "acme/api");
        assert_eq!(familiar_repo("r:5000/a/b@sha256:x"), "r:5000/a/b");
    }

    #[test]
    fn auth_errors_say_where_to_add_credentials() {
        let a =
            RegistryAuth::parse(r#"{"auths": {}}"#, Path::new("/etc/gitmoor/reg.json")).unwrap();
        let msg =
            "Head \"http://127.0.0.1:5000/v2/test/bb/manifests/1\": no basic auth credentials";
        let e = auth_error("127.0.0.1:5000/test/bb:1", msg, Some(&a), false)
            .unwrap()
            .to_string();
        assert!(
            e.contains("registry 127.0.0.1:5000")
                && e.contains("add an entry for \"127.0.0.1:5000\" to /etc/gitmoor/reg.json"),
            "{e}"
        );
        let e = auth_error("127.0.0.1:5000/test/bb:1", msg, None, false)
            .unwrap()
            .to_string();
        assert!(e.contains("registry_auth"), "{e}");
        assert!(auth_error("x", "manifest unknown", None, false).is_none());
    }
}
