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
/// The hash scheme and key of the object's hashes (`hmac1:<key id>`, see `hashkey`): a container
/// or image hashed under another scheme or key is recreated or rebuilt once, saying so, since its
/// hashes cannot be compared field by field.
pub const HASH: &str = "io.gitmoor.hash";
