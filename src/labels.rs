//! Label names on the Docker objects gitmoor makes. The compose ones make `docker compose ps` and
//! `docker compose ls` show gitmoor's work; the `io.gitmoor.*` ones are how gitmoor finds its own
//! objects again in one listing call, and why it can explain a recreate without keeping state.

pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
pub const ONEOFF: &str = "com.docker.compose.oneoff";
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const NETWORK: &str = "com.docker.compose.network";
pub const VOLUME: &str = "com.docker.compose.volume";
pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const COMPOSE_VERSION: &str = "com.docker.compose.version";

/// Present (value `true`) on every object gitmoor manages; the listing filter.
pub const MANAGED: &str = "io.gitmoor.managed";
/// The gitmoor instance (config `instance`, default `default`) that owns the object. A reconcile
/// sees and prunes only its own instance's objects, so a second gitmoor (or a test) on the same
/// engine can never remove what the first one made.
pub const INSTANCE: &str = "io.gitmoor.instance";
/// The commit the object was last created from.
pub const COMMIT: &str = "io.gitmoor.commit";
/// Per-field hashes of the service spec (JSON object), so the planner can say which field changed.
/// Hashes only: no value, secret or not, is ever stored in a label.
pub const FINGERPRINT: &str = "io.gitmoor.fingerprint";
/// The repo the object was made from: `repo_label` of the config's `repo`. Two configs of one
/// instance (a test, a demo, a second repo) share the engine and the instance label; this label
/// is how each one tells its own objects from the other's, and never prunes or replaces what
/// another repo made (see `plan::owner`). Never holds a credential: see `repo_label`.
pub const REPO: &str = "io.gitmoor.repo";

/// The value of the `REPO` label for a config: its repo (see `repo_label`) and its branch, as
/// `<url>#<branch>`. Two configs of the same repo on two branches (staging and production on one
/// engine) are two owners: each leaves the other's stacks alone.
pub fn owner_label(url: &str, branch: &str) -> String {
    format!("{}#{branch}", repo_label(url))
}

/// The repo part of the `REPO` label for a repo URL: the URL without anything that can hold a
/// secret. For every `scheme://` URL the userinfo (`user:token@`, `x-access-token:…@`) is dropped
/// whatever the scheme, and so are a query and a fragment (`?private_token=…`); scp-like
/// `user@host:path` keeps its user (a login name, never a secret) and local paths stay as they
/// are. Labels are readable by anyone who can list containers, so this must hold nothing more.
/// Stable for one config: `https://TOKEN@host/r` and `https://host/r` give the same value, so a
/// rotated token never makes a repo's own objects look foreign.
pub fn repo_label(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// The hash scheme and key of the object's hashes (`hmac1:<key id>`, see `hashkey`): a container
/// or image hashed under another scheme or key is recreated or rebuilt once, saying so, since its
/// hashes cannot be compared field by field.
pub const HASH: &str = "io.gitmoor.hash";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_label_tells_branches_apart() {
        assert_eq!(
            owner_label("https://tok_s3cret@host/o/r.git", "main"),
            "https://host/o/r.git#main"
        );
        assert_ne!(
            owner_label("/srv/r", "main"),
            owner_label("/srv/r", "staging")
        );
    }

    #[test]
    fn the_repo_label_never_holds_a_credential() {
        for (url, want) in [
            (
                "https://x-access-token:gh_s3cret@github.com/o/r.git",
                "https://github.com/o/r.git",
            ),
            (
                "https://gh_s3cret@github.com/o/r.git",
                "https://github.com/o/r.git",
            ),
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            (
                "ssh://git:pw_s3cret@host:2222/o/r.git",
                "ssh://host:2222/o/r.git",
            ),
            (
                "https://host/o/r.git?private_token=s3cret#frag",
                "https://host/o/r.git",
            ),
            ("https://host/o/r@v1.git", "https://host/o/r@v1.git"),
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
            ("file:///srv/infra.git", "file:///srv/infra.git"),
            ("/srv/infra.git", "/srv/infra.git"),
        ] {
            assert_eq!(repo_label(url), want, "{url}");
            assert!(!repo_label(url).contains("s3cret"), "{url}");
        }
    }
}
