//! Every refusal names the file, the line and the dotted key, and says what to do.

use super::tests::{load_with, ok_with, seed_vars, snap, strict, FILE, SECRETS, SEED};
use super::*;

/// One refusal: the compose text, where it points (the first line containing `at`), the key,
/// and a part of the message.
struct Case {
    name: &'static str,
    text: &'static str,
    at: &'static str,
    key: &'static str,
    says: &'static str,
}

const fn case(
    name: &'static str,
    text: &'static str,
    at: &'static str,
    key: &'static str,
    says: &'static str,
) -> Case {
    Case {
        name,
        text,
        at,
        key,
        says,
    }
}

fn line_of(text: &str, at: &str) -> usize {
    text.lines()
        .position(|l| l.contains(at))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("marker {at:?} not in the text"))
}

const CASES: &[Case] = &[
    case("build context missing", "services:\n  api:\n    build: ./app\n", "build:", "services.api.build", "the build context `./app` does not exist in the repo (compose/app/app)"),
    case("build without Dockerfile", "services:\n  api:\n    build: .\n", "build:", "services.api.build.dockerfile", "no `Dockerfile` in the build context"),
    case("build remote context", "services:\n  api:\n    build: https://github.com/a/b.git\n", "build:", "services.api.build", "a remote build context is not supported"),
    case("build leaves the repo", "services:\n  api:\n    build:\n      context: ../../..\n", "context", "services.api.build.context", "leaves the repo"),
    case("build cache_from", "services:\n  api:\n    build:\n      context: .\n      cache_from: [x]\n", "cache_from", "services.api.build.cache_from", "not supported yet"),
    case("image path", "services:\n  api:\n    image: \"../events?\"\n", "image:", "services.api.image", "\"../events?\" is not an image reference"),
    case("image from variables", "services:\n  api:\n    image: \"app:${TAG}\"\n", "image:", "services.api.image", "variable TAG is not set"),
    case("image uppercase", "services:\n  api:\n    image: Postgres:15\n", "image:", "services.api.image", "`Postgres` is not a valid name part"),
    case("pull_policy", "services:\n  api:\n    image: x\n    pull_policy: sometimes\n", "pull_policy", "services.api.pull_policy", "unknown pull policy `sometimes`"),
    case("pull_policy build without build", "services:\n  api:\n    image: x\n    pull_policy: build\n", "pull_policy", "services.api.pull_policy", "`build` needs a build: section"),
    case("image missing", "services:\n  api:\n    restart: always\n", "api:", "services.api.image", "missing; gitmoor runs an image, or builds one with build:"),
    case("unknown service key", "services:\n  api:\n    image: x\n    colour: blue\n", "colour", "services.api.colour", "not supported by gitmoor; remove it"),
    case("external links", "services:\n  api:\n    image: x\n    external_links: [db]\n", "external_links", "services.api.external_links", "not supported (links to containers outside the stack)"),
    case("unknown top-level key", "services:\n  api:\n    image: x\nfoo: 1\n", "foo", "foo", "not supported by gitmoor; remove it"),
    case("secret from environment", "services:\n  api:\n    image: x\nsecrets:\n  s:\n    environment: S\n", "environment", "secrets.s.environment", "not supported yet (only file: sources)"),
    case("secret external", "services:\n  api:\n    image: x\nsecrets:\n  s:\n    external: true\n", "external", "secrets.s.external", "Swarm"),
    case("secret without file", "services:\n  api:\n    image: x\nsecrets:\n  s: {}\n", "s: {}", "secrets.s.file", "missing"),
    case("secret leaves the secrets dir", "services:\n  api:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    file: ../s.txt\n", "file:", "secrets.s.file", "not a path inside the stack's folder of the secrets dir"),
    case("secret undeclared", "services:\n  api:\n    image: x\n    secrets: [s]\n", "secrets", "services.api.secrets[0]", "secret `s` is not declared"),
    case("config missing in repo", "services:\n  api:\n    image: x\nconfigs:\n  c:\n    file: ./c.conf\n", "file:", "configs.c.file", "`./c.conf` does not exist in the repo (compose/app/c.conf)"),
    case("config leaves the stack", "services:\n  api:\n    image: x\nconfigs:\n  c:\n    file: ../other/c.conf\n", "file:", "configs.c.file", "is not a file inside the stack folder"),
    case("config content", "services:\n  api:\n    image: x\nconfigs:\n  c:\n    content: hi\n", "content", "configs.c.content", "not supported yet"),
    case("config undeclared", "services:\n  api:\n    image: x\n    configs:\n      - source: c\n", "source", "services.api.configs[0]", "config `c` is not declared"),
    case("services missing", "volumes:\n  a:\n", "volumes", "services", "missing"),
    case("network external with driver", "services:\n  api:\n    image: x\nnetworks:\n  web:\n    external: true\n    driver: bridge\n", "driver", "networks.web.driver", "an external object is made outside this file"),
    case("network subnet", "services:\n  api:\n    image: x\nnetworks:\n  web:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/40\n", "subnet", "networks.web.ipam.config[0].subnet", "`10.0.0.0/40` is not a subnet"),
    case("network gateway without subnet", "services:\n  api:\n    image: x\nnetworks:\n  web:\n    ipam:\n      config:\n        - gateway: 10.0.0.1\n", "gateway", "networks.web.ipam.config[0].subnet", "ip_range and gateway need a subnet"),
    case("network name", "services:\n  api:\n    image: x\nnetworks:\n  web:\n    name: \"my net\"\n", "name:", "networks.web.name", "is not a valid Docker name"),
    case("network unknown key", "services:\n  api:\n    image: x\nnetworks:\n  web:\n    color: red\n", "color", "networks.web.color", "not supported by gitmoor"),
    case("volume external with labels", "services:\n  api:\n    image: x\nvolumes:\n  data:\n    external: true\n    labels: {a: b}\n", "labels", "volumes.data.labels", "an external object is made outside this file"),
    case("volume unknown key", "services:\n  api:\n    image: x\nvolumes:\n  data:\n    size: 1g\n", "size", "volumes.data.size", "not supported by gitmoor"),
    case("name differs", "name: other\nservices:\n  api:\n    image: x\n", "name:", "name", "`other` differs from the stack folder name `app`; remove name:, or write name: app"),
    case("literal secret, map", "services:\n  api:\n    image: x\n    environment:\n      DB_PASSWORD: hunter2\n", "DB_PASSWORD", "services.api.environment.DB_PASSWORD", "literal secret in a committed file; move the value to <secrets_dir>/app.env and write DB_PASSWORD: ${DB_PASSWORD}"),
    case("literal secret, list", "services:\n  api:\n    image: x\n    environment:\n      - DB_PASSWD=hunter2\n", "DB_PASSWD", "services.api.environment.DB_PASSWD", "literal secret in a committed file"),
    case("literal secret, lowercase token", "services:\n  api:\n    image: x\n    environment:\n      github_token: ghp_x\n", "github_token", "services.api.environment.github_token", "literal secret"),
    case("literal secret, api key", "services:\n  api:\n    image: x\n    environment:\n      STRIPE_API_KEY: 12345\n", "STRIPE", "services.api.environment.STRIPE_API_KEY", "literal secret"),
    case("literal secret, private key", "services:\n  api:\n    image: x\n    environment:\n      - SSH_PRIVATE_KEY=abc\n", "SSH", "services.api.environment.SSH_PRIVATE_KEY", "literal secret"),
    case("literal secret, app secret", "services:\n  api:\n    image: x\n    environment:\n      APP_SECRET: 's3cr3t'\n", "APP_SECRET", "services.api.environment.APP_SECRET", "literal secret"),
    // Inside the stack folder it would be a host file (tests_host_files.rs); outside it, it can only be in the repo.
    case("env_file missing in repo", "services:\n  api:\n    image: x\n    env_file: ../shared/app.env\n", "env_file", "services.api.env_file", "`../shared/app.env` does not exist in the repo (compose/shared/app.env)"),
    case("env_file absolute", "services:\n  api:\n    image: x\n    env_file: [/etc/app.env]\n", "/etc/app.env", "services.api.env_file[0]", "absolute env_file path is not supported"),
    case("env_file leaves the repo", "services:\n  api:\n    image: x\n    env_file: ../../../x.env\n", "env_file", "services.api.env_file", "leaves the repo"),
    case("env var twice", "services:\n  api:\n    image: x\n    environment:\n      - A=1\n      - A=2\n", "A=2", "services.api.environment.A", "A is set twice"),
    case("port invalid", "services:\n  api:\n    image: x\n    ports:\n      - \"80:80\"\n      - \"99999:80\"\n", "99999", "services.api.ports[1]", "`99999` is not a port number"),
    case("port range mismatch", "services:\n  api:\n    image: x\n    ports: [\"8000-8010:80\"]\n", "ports", "services.api.ports[0]", "same length"),
    case("port long without target", "services:\n  api:\n    image: x\n    ports:\n      - published: 80\n", "published", "services.api.ports[0]", "missing target"),
    case("port long unknown key", "services:\n  api:\n    image: x\n    ports:\n      - target: 80\n        app_protocol: http\n", "target", "services.api.ports[0].app_protocol", "not supported by gitmoor"),
    case("port protocol", "services:\n  api:\n    image: x\n    ports: [\"80/sctp\"]\n", "ports", "services.api.ports[0]", "protocol `sctp`"),
    case("volume undeclared", "services:\n  api:\n    image: x\n    volumes:\n      - data:/data\n", "data:/data", "services.api.volumes[0]", "volume `data` is not declared; add it under the top-level volumes:"),
    case("bind leaves the stack", "services:\n  api:\n    image: x\n    volumes:\n      - ../other/conf:/conf\n", "../other", "services.api.volumes[0]", "`../other/conf` leaves the stack folder compose/app"),
    case("bind home dir", "services:\n  api:\n    image: x\n    volumes:\n      - ~/data:/data\n", "~/data", "services.api.volumes[0]", "home-directory path"),
    case("mount option", "services:\n  api:\n    image: x\n    volumes:\n      - /srv:/srv:rshared\n", "/srv", "services.api.volumes[0]", "mount option `rshared` is not supported yet"),
    case("mount target relative", "services:\n  api:\n    image: x\n    volumes:\n      - /srv:srv\n", "/srv", "services.api.volumes[0]", "must be absolute"),
    case("long volume without type", "services:\n  api:\n    image: x\n    volumes:\n      - source: /a\n        target: /b\n", "source", "services.api.volumes[0]", "missing type"),
    case("long volume bad type", "services:\n  api:\n    image: x\n    volumes:\n      - type: npipe\n        target: /b\n", "npipe", "services.api.volumes[0].type", "type `npipe` is not supported"),
    case("long volume bind options", "services:\n  api:\n    image: x\n    volumes:\n      - type: bind\n        source: /a\n        target: /b\n        bind:\n          propagation: rshared\n", "propagation", "services.api.volumes[0].bind.propagation", "not supported yet"),
    case("tmpfs relative", "services:\n  api:\n    image: x\n    tmpfs: run\n", "tmpfs", "services.api.tmpfs", "`run` must be an absolute path"),
    case("network undeclared", "services:\n  api:\n    image: x\n    networks: [front]\n", "networks", "services.api.networks.front", "network `front` is not declared; add it under the top-level networks:"),
    case("ipv4_address without subnet", "services:\n  api:\n    image: x\n    networks:\n      default:\n        ipv4_address: 10.0.0.2\n", "default:", "services.api.networks.default.ipv4_address", "a static address needs a subnet, and network `default` has none"),
    case("ipv4_address outside the subnet", "services:\n  api:\n    image: x\n    networks:\n      web:\n        ipv4_address: 10.9.0.2\nnetworks:\n  web:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/24\n", "web:", "services.api.networks.web.ipv4_address", "`10.9.0.2` is outside the subnets of network `web`"),
    case("ipv4_address not an address", "services:\n  api:\n    image: x\n    networks:\n      default:\n        ipv4_address: nope\n", "ipv4", "services.api.networks.default.ipv4_address", "`nope` is not an IP address"),
    case("network_mode with networks", "services:\n  api:\n    image: x\n    network_mode: host\n    networks: [default]\n", "networks:", "services.api.networks", "cannot be combined with network_mode"),
    case("network_mode unknown service", "services:\n  api:\n    image: x\n    network_mode: service:vpn\n", "network_mode", "services.api.network_mode", "unknown service `vpn`"),
    case("network_mode bogus", "services:\n  api:\n    image: x\n    network_mode: overlay\n", "network_mode", "services.api.network_mode", "`overlay` is not supported; use host, none, bridge, default, service:<name>, container:<name>"),
    case("pid bogus", "services:\n  api:\n    image: x\n    pid: private\n", "pid", "services.api.pid", "`private` is not supported"),
    case("container_name invalid", "services:\n  api:\n    image: x\n    container_name: \"my app\"\n", "container_name", "services.api.container_name", "is not a valid container name"),
    case("container_name twice", "services:\n  api:\n    image: x\n    container_name: app\n  web:\n    image: x\n    container_name: \"app\"\n", "\"app\"", "services.web.container_name", "`app` is also the container name of service api"),
    case("expose invalid", "services:\n  api:\n    image: x\n    expose: [\"80/icmp\"]\n", "expose", "services.api.expose[0]", "`80/icmp` is not a port"),
    case("stop_grace_period", "services:\n  api:\n    image: x\n    stop_grace_period: soon\n", "stop_grace_period", "services.api.stop_grace_period", "`soon` is not a duration"),
    case("ulimit soft above hard", "services:\n  api:\n    image: x\n    ulimits:\n      nofile:\n        soft: 2\n        hard: 1\n", "nofile", "services.api.ulimits.nofile", "soft is above hard"),
    case("device CDI", "services:\n  api:\n    image: x\n    devices: [\"nvidia.com/gpu=all\"]\n", "devices", "services.api.devices[0]", "only device paths are supported"),
    case("shm_size", "services:\n  api:\n    image: x\n    shm_size: big\n", "shm_size", "services.api.shm_size", "`big` is not a size"),
    case("init", "services:\n  api:\n    image: x\n    init: maybe\n", "init", "services.api.init", "expected true or false"),
    case("profile name", "services:\n  api:\n    image: x\n    profiles: [\"-x\"]\n", "profiles", "services.api.profiles[0]", "is not a valid profile name"),
    case("joins an inactive service by container name", "services:\n  agent:\n    image: x\n    pid: container:the-db\n  db:\n    image: x\n    container_name: the-db\n    profiles: [debug]\n", "pid", "services.agent.pid", "`db` does not run: its profiles (debug) are not enabled"),
    case("joins an inactive service", "services:\n  agent:\n    image: x\n    network_mode: service:db\n  db:\n    image: x\n    profiles: [debug]\n", "network_mode", "services.agent.network_mode", "`db` does not run: its profiles (debug) are not enabled"),
    case("depends on an inactive service", "services:\n  api:\n    image: x\n    depends_on: [dbg]\n  dbg:\n    image: x\n    profiles: [debug]\n", "depends_on", "services.api.depends_on.dbg", "`dbg` does not run: its profiles (debug) are not enabled"),
    case("literal secret in build args", "services:\n  api:\n    image: x\n    build:\n      args:\n        NPM_TOKEN: abc\n", "NPM_TOKEN", "services.api.build.args.NPM_TOKEN", "literal secret"),
    case("depends_on unknown", "services:\n  api:\n    image: x\n    depends_on: [nope]\n", "depends_on", "services.api.depends_on.nope", "unknown service `nope`"),
    case("depends_on self", "services:\n  api:\n    image: x\n    depends_on: [api]\n", "depends_on", "services.api.depends_on.api", "cannot depend on itself"),
    case("depends_on condition", "services:\n  api:\n    image: x\n    depends_on:\n      db:\n        condition: service_ready\n  db:\n    image: y\n", "service_ready", "services.api.depends_on.db.condition", "unknown condition `service_ready`; use service_started"),
    case("depends_on cycle", "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [a]\n", "depends_on: [b]", "services.a.depends_on", "dependency cycle: a -> b -> c -> a"),
    case("healthcheck duration", "services:\n  api:\n    image: x\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 10\n", "interval", "services.api.healthcheck.interval", "`10` is not a duration; write it like 10s"),
    case("healthcheck test list", "services:\n  api:\n    image: x\n    healthcheck:\n      test: [\"curl\", \"-f\", \"localhost\"]\n", "test", "services.api.healthcheck.test", "must start with CMD, CMD-SHELL or NONE"),
    case("healthcheck retries", "services:\n  api:\n    image: x\n    healthcheck:\n      test: true\n      retries: many\n", "retries", "services.api.healthcheck.retries", "expected an integer, found a string"),
    case("restart", "services:\n  api:\n    image: x\n    restart: sometimes\n", "restart", "services.api.restart", "unknown restart policy `sometimes`; use no, always, on-failure[:N] or unless-stopped"),
    case("mem_limit", "services:\n  api:\n    image: x\n    mem_limit: lots\n", "mem_limit", "services.api.mem_limit", "`lots` is not a size"),
    case("cpus", "services:\n  api:\n    image: x\n    cpus: -1\n", "cpus", "services.api.cpus", "not a CPU count"),
    case("deploy replicas", "services:\n  api:\n    image: x\n    deploy:\n      replicas: 2\n", "replicas", "services.api.deploy.replicas", "not supported (one container per service); remove it"),
    case("deploy reservations", "services:\n  api:\n    image: x\n    deploy:\n      resources:\n        reservations:\n          memory: 1g\n", "reservations", "services.api.deploy.resources.reservations", "not supported yet"),
    case("deploy restart_policy condition", "services:\n  api:\n    image: x\n    deploy:\n      restart_policy:\n        condition: sometimes\n", "condition", "services.api.deploy.restart_policy.condition", "unknown condition `sometimes`; use none, on-failure or any"),
    case("build context is compose/", "services:\n  api:\n    build:\n      context: ..\n      dockerfile: docker/Dockerfile\n", "context", "services.api.build.context", "`..` is compose/, the folder that holds every stack, not a project's source folder"),
    case("include", "services:\n  api:\n    image: x\ninclude:\n  - ./db.yaml\n", "include", "include", "not supported (a stack is the one compose file of its folder)"),
    case("deploy memory differs", "services:\n  api:\n    image: x\n    mem_limit: 1g\n    deploy:\n      resources:\n        limits:\n          memory: 2g\n", "memory: 2g", "services.api.deploy.resources.limits.memory", "differs from the service-level limit"),
    case("scale", "services:\n  api:\n    image: x\n    scale: 3\n", "scale", "services.api.scale", "one container per service"),
    case("service name", "services:\n  _api:\n    image: x\n", "_api", "services._api", "not a valid service name"),
    case("reserved label", "services:\n  api:\n    image: x\n    labels:\n      com.docker.compose.project: other\n", "labels", "services.api.labels.com.docker.compose.project", "this label is set by gitmoor"),
    case("extra_hosts", "services:\n  api:\n    image: x\n    extra_hosts: [\"nohost\"]\n", "extra_hosts", "services.api.extra_hosts[0]", "`nohost` is not host:ip"),
    case("command quoting", "services:\n  api:\n    image: x\n    command: echo 'unbalanced\n", "command", "services.api.command", "unbalanced quotes"),
    case("wrong type", "services:\n  api:\n    image: x\n    read_only: sometimes\n", "read_only", "services.api.read_only", "expected true or false, found a string"),
    case("service not a mapping", "services:\n  api: nginx\n", "api", "services.api", "expected a mapping, found a string"),
    case("logging unknown", "services:\n  api:\n    image: x\n    logging:\n      format: json\n", "format", "services.api.logging.format", "not supported by gitmoor"),
    case("interpolation syntax", "services:\n  api:\n    image: \"x:${TAG\"\n", "image", "services.api.image", "invalid interpolation format"),
    case("required variable", "services:\n  api:\n    image: \"x:${TAG:?set the tag}\"\n", "image", "services.api.image", "required variable TAG is missing a value: set the tag; add TAG=... to /etc/gitmoor/secrets/app.env"),
    case("missing variable", "services:\n  api:\n    image: x\n    environment:\n      DB_URL: postgres://${DB_USER}@db\n", "DB_URL", "services.api.environment.DB_URL", "variable DB_USER is not set; add DB_USER=... to /etc/gitmoor/secrets/app.env"),
    case("missing bare variable", "services:\n  api:\n    image: x\n    environment:\n      - DB_USER\n", "DB_USER", "services.api.environment.DB_USER", "variable DB_USER is not set; add DB_USER=... to /etc/gitmoor/secrets/app.env"),
    case("yaml syntax", "services:\n  api:\n    image: x\n   bad: [\n", "bad", "", "invalid YAML"),
    case("duplicate key", "services:\n  api:\n    image: x\n    image: y\n", "image: y", "", "duplicate key `image`"),
    case("empty file", "", "", "services", "the file is empty"),
];

#[test]
fn every_refusal_names_file_line_and_key() {
    for c in CASES {
        let (spec, f) = load_with("app", c.text, &[], &strict(&[]));
        let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        let prefix = match (c.at, c.key) {
            ("", key) => format!("{FILE}: {key}: "),
            (at, "") => format!("{FILE}:{}: ", line_of(c.text, at)),
            (at, key) => format!("{FILE}:{}: {key}: ", line_of(c.text, at)),
        };
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with(&prefix) && e.contains(c.says)),
            "case {:?}: want an error starting {prefix:?} containing {:?}, got {shown:#?}",
            c.name,
            c.says
        );
        assert!(spec.is_none(), "case {:?}: no spec with errors", c.name);
        for e in &shown {
            for value in ["hunter2", "ghp_x", "12345", "s3cr3t"] {
                assert!(!e.contains(value), "case {:?} leaks a value: {e}", c.name);
            }
        }
    }
}

#[test]
fn without_secrets_dir_an_image_is_judged_unless_a_variable_is_unknown() {
    let digest = "@${DIGEST:?pin it}";
    for (image, refused) in [
        ("\"../events?\"", true),
        ("\"app:${TAG}\"", false),
        (&*format!("\"app{digest}\""), false),
        ("\"Bad:${TAG}\"", false),
    ] {
        let text = format!("services:\n  api:\n    image: {image}\n");
        let (_, f) = load_with("app", &text, &[], &StackVars::unchecked());
        let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown
                .iter()
                .any(|e| e.contains("is not an image reference")),
            refused,
            "{image}: {shown:#?}"
        );
    }
}

#[test]
fn missing_variables_warn_without_secrets_dir() {
    let text = "services:\n  api:\n    image: \"x:${TAG:?set the tag}\"\n    environment:\n      - DB_USER\n      - URL=http://${HOST}/\n";
    let (spec, f) = load_with("app", text, &[], &StackVars::unchecked());
    assert!(f.errors.is_empty(), "{:#?}", f.errors);
    assert!(spec.is_some());
    let shown: Vec<String> = f.warnings.iter().map(|e| e.to_string()).collect();
    let want = [
        format!("{FILE}:3: services.api.image: required variable TAG is missing a value: set the tag (no secrets dir given"),
        format!("{FILE}:5: services.api.environment.DB_USER: variable DB_USER is not set here"),
        format!("{FILE}:6: services.api.environment[1]: variable HOST is not set here"),
    ];
    for w in want {
        assert!(
            shown.iter().any(|s| s.starts_with(&w)),
            "want {w:?} in {shown:#?}"
        );
    }
}

#[test]
fn env_file_dot_env_needs_the_secrets_file_in_strict_mode() {
    let text = "services:\n  api:\n    image: x\n    env_file: .env\n";
    let mut vars = strict(&[]);
    vars.has_secrets_file = false;
    let (_, f) = load_with("app", text, &[], &vars);
    assert_eq!(
        f.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        vec![format!("{FILE}:4: services.api.env_file: `.env` is the stack's secrets file {SECRETS}, which does not exist; create {SECRETS}, or remove this env_file entry")]
    );
    // Unchecked mode: nothing to compare against.
    let (spec, f) = load_with("app", text, &[], &StackVars::unchecked());
    assert!(f.errors.is_empty() && spec.is_some());
}

#[test]
fn committed_env_file_with_a_literal_secret() {
    let text = "services:\n  api:\n    image: x\n    env_file: ./app.env\n";
    let files = [(
        "compose/app/app.env",
        "# settings\nLOG=debug\nDB_PASSWORD=hunter2\nAPI_TOKEN=${API_TOKEN}\n",
    )];
    let (_, f) = load_with("app", text, &files, &strict(&[]));
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert!(
        shown.iter().any(|e| e
            .starts_with("compose/app/app.env:3: DB_PASSWORD: literal secret in a committed file")),
        "{shown:#?}"
    );
    assert!(!shown.iter().any(|e| e.contains("hunter2")));
}

#[test]
fn invalid_stack_name_says_rename_the_folder() {
    let (_, f) = load_with(
        "My App",
        "services:\n  api:\n    image: x\n",
        &[],
        &strict(&[]),
    );
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert!(
        shown.iter().any(|e| e
            .starts_with("compose/My App/compose.yaml: stack name `My App` is not valid")
            && e.contains("rename the folder compose/My App (e.g. compose/my-app)")),
        "{shown:#?}"
    );
}

#[test]
fn a_symlink_out_of_the_stack_is_not_mounted() {
    let text = "services:\n  api:\n    image: x\n    volumes: [./conf:/conf]\n";
    let mut s = snap(&[(FILE, text), ("compose/app/conf/ok", "x")]);
    s.files.insert(
        "compose/app/conf/passwd".into(),
        crate::source::snapshot::FileEntry {
            data: b"/etc/passwd".to_vec(),
            executable: false,
            symlink: true,
        },
    );
    let vars = strict(&[]);
    let (_, f) = load_stack(&StackInput {
        name: "app",
        file: FILE,
        text,
        snap: &s,
        vars: &vars,
        bind_root: Path::new("/b"),
        data_dir: Path::new("/var/lib/gitmoor/data"),
        secrets_dir: None,
        profiles: &[],
        limits: &crate::spec::limits::Limits::default(),
        policy: None,
        home_dir: None,
        literal_secrets: Default::default(),
    });
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![format!("{FILE}:4: services.api.volumes[0]: `compose/app/conf/passwd` is a symlink that Docker would follow on the host (the mounted path itself, or a link out of the stack folder); commit the file or folder itself")]
    );
}

/// A chain of links (`a -> b -> ../../..`) as the mounted path: Docker resolves a bind's source
/// on the host, so the source itself must never be a link, whatever the chain reads, for a bind
/// mount and for a config alike; and the policy does not need to see it.
#[test]
fn a_chain_of_links_as_the_mounted_path_is_refused() {
    let link = |to: &str| crate::source::snapshot::FileEntry {
        data: to.as_bytes().to_vec(),
        executable: false,
        symlink: true,
    };
    for (text, key) in [
        (
            "services:\n  api:\n    image: x\n    volumes: [\"./a:/var/run/docker.sock\"]\n",
            "services.api.volumes[0]",
        ),
        (
            "services:\n  api:\n    image: x\n    configs: [c]\nconfigs:\n  c:\n    file: ./a\n",
            "configs.c.file",
        ),
        (
            "services:\n  api:\n    image: x\n    volumes: [\"./x:/x\"]\n",
            "services.api.volumes[0]",
        ),
    ] {
        let mut s = snap(&[(FILE, text), ("compose/app/inside", "x")]);
        s.files.insert("compose/app/a".into(), link("b"));
        s.files.insert(
            "compose/app/b".into(),
            link("../../../../../../../../var/run/docker.sock"),
        );
        s.files.insert("compose/app/l".into(), link("../../.."));
        s.files.insert("compose/app/x".into(), link("l/../inside"));
        let vars = strict(&[]);
        let baseline = crate::spec::policy::Policy::default();
        let (spec, f) = load_stack(&StackInput {
            name: "app",
            file: FILE,
            text,
            snap: &s,
            vars: &vars,
            bind_root: Path::new("/b"),
            data_dir: Path::new("/var/lib/gitmoor/data"),
            secrets_dir: None,
            profiles: &[],
            limits: &crate::spec::limits::Limits::default(),
            policy: Some(&baseline),
            home_dir: None,
            literal_secrets: Default::default(),
        });
        assert!(spec.is_none(), "{text}");
        let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.contains(key) && e.contains("is a symlink that Docker would follow")),
            "{text}: {shown:#?}"
        );
    }
}

#[test]
fn all_errors_are_collected() {
    let text = "services:\n  api:\n    build: .\n    external_links: [db]\n    restart: sometimes\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: hunter2\n";
    let (spec, f) = load_with("app", text, &[], &strict(&[]));
    assert!(spec.is_none());
    assert_eq!(f.errors.len(), 4, "{:#?}", f.errors);
}

#[test]
fn seed_app_with_a_missing_secret_names_the_secrets_file() {
    let mut vars = seed_vars();
    vars.vars.remove("JWT_SECRET");
    let (spec, f) = load_with("app", SEED, &[], &vars);
    assert!(spec.is_none());
    assert_eq!(
        f.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        vec![format!("{FILE}:8: services.backend.environment.JWT_SECRET: variable JWT_SECRET is not set; add JWT_SECRET=... to {SECRETS}")]
    );
}

#[test]
fn secret_file_paths_are_not_literal_secrets() {
    let text = "services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD_FILE: /run/secrets/db\n";
    let (spec, f) = load_with("app", text, &[], &strict(&[]));
    assert!(f.errors.is_empty() && spec.is_some(), "{:#?}", f.errors);
}

#[test]
fn values_from_the_secrets_file_are_never_quoted() {
    let text = "services:\n  api:\n    image: x\n    ports: [\"${PORT_SPEC}\"]\n    mem_limit: ${MEM}\n    volumes: [\"${VOL}:/data\"]\n";
    let vars = strict(&[
        ("PORT_SPEC", "hunter2hunter2"),
        ("MEM", "s3cr3t-value"),
        ("VOL", "tok-123"),
    ]);
    let (_, f) = load_with("app", text, &[], &vars);
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 3, "{shown:#?}");
    for e in &shown {
        for v in ["hunter2", "s3cr3t", "tok-123"] {
            assert!(!e.contains(v), "leaks {v}: {e}");
        }
        assert!(e.contains("***"), "{e}");
    }
}

/// A `.env` holds settings too: a value the commit already shows (a service name, the stack's
/// name) is not blanked out of the messages that name them; a value only the host knows still is.
#[test]
fn values_the_commit_already_shows_are_not_blanked_out_of_messages() {
    let text = "services:\n  frontend:\n    image: x\n    environment:\n      - B\n    mem_limit: ${MEM}\n";
    let vars = strict(&[
        ("SITE_TITLE", "frontend"),
        ("X", "app"),
        ("MEM", "s3cr3t-value"),
    ]);
    let (_, f) = load_with("app", text, &[], &vars);
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(
        shown[0].contains("services.frontend.environment.B") && shown[0].contains(SECRETS),
        "{shown:#?}"
    );
    assert!(
        shown[1].contains("***") && !shown[1].contains("s3cr3t"),
        "{shown:#?}"
    );
}

/// Found on shipped files (the collection's wger, healthchecks and a list-form `${A:?}`): one
/// error each, saying what is wrong and what to do, and nothing it merely causes.
#[test]
fn a_failed_required_variable_in_a_list_environment_is_one_error() {
    let text =
        "services:\n  web:\n    image: x\n    environment:\n      - A=${A:?need A}\n      - B=1\n";
    let (spec, f) = load_with("app", text, &[], &strict(&[]));
    assert!(spec.is_none());
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![format!("{FILE}:5: services.web.environment[0]: required variable A is missing a value: need A; add A=... to {SECRETS}")]
    );
    // The mapping form, and a flow list, the same.
    for text in [
        "services:\n  web:\n    image: x\n    environment:\n      A: ${A:?need A}\n",
        "services:\n  web:\n    image: x\n    environment: [\"A=${A:?need A}\", \"B=${B:?need B}\"]\n",
    ] {
        let (_, f) = load_with("app", text, &[], &strict(&[]));
        assert!(
            f.errors.iter().all(|e| e.message.starts_with("required variable")),
            "{:#?}",
            f.errors
        );
    }
}

#[test]
fn include_is_refused_once_at_its_line_without_the_errors_it_causes() {
    // wger's layout: services completed (image and all) by the included files.
    let text = "services:\n  web:\n    image: x\n    depends_on: [db]\n  db:\n    shm_size: 256mb\n  cache:\n    volumes:\n      - redis-data:/data\nvolumes:\n  redis-data:\ninclude:\n  - path: ./services/postgres.yaml\n  - ./services/redis.yaml\n";
    let (spec, f) = load_with("app", text, &[], &strict(&[]));
    assert!(spec.is_none());
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![format!("{FILE}:12: include: not supported (a stack is the one compose file of its folder): the services, networks and volumes of `./services/postgres.yaml`, `./services/redis.yaml` are not read; put the included file's services (and the networks and volumes they use) in this compose file, or make the included project its own stack folder (compose/<name>/compose.yaml)")]
    );
    // Without include:, a service with no image is refused as before.
    let alone = "services:\n  db:\n    shm_size: 256mb\n";
    let (_, f) = load_with("app", alone, &[], &strict(&[]));
    assert_eq!(f.errors.len(), 1);
    assert_eq!(f.errors[0].key.as_deref(), Some("services.db.image"));
}

#[test]
fn a_build_context_out_of_the_stack_folder_says_where_it_points() {
    // healthchecks' docker/docker-compose.yml: `context: ..` meant the project's source tree.
    let text =
        "services:\n  web:\n    build:\n      context: ..\n      dockerfile: docker/Dockerfile\n";
    let (_, f) = load_with(
        "app",
        text,
        &[("compose/docker/Dockerfile", "FROM x\n")],
        &strict(&[]),
    );
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![format!("{FILE}:4: services.web.build.context: `..` is compose/, the folder that holds every stack, not a project's source folder (where this file comes from, `..` was the project's source tree); commit the source the Dockerfile needs to a folder of this repo and write its path as context: (e.g. ./src, or ../../app for app/ at the repo root), or remove build: and run the project's published image with image:")]
    );
    // Another folder of the repo is a context (a repo that holds the app's source)...
    let app = "services:\n  web:\n    build:\n      context: ../../app\n      dockerfile: docker/Dockerfile\n";
    let spec = ok_with(app, &[("app/docker/Dockerfile", "FROM x\n")], &strict(&[]));
    let build = spec.services["web"].build.clone().expect("a build");
    assert_eq!(
        (build.context.as_str(), build.dockerfile.as_str()),
        ("app", "docker/Dockerfile")
    );
    // ... and a missing Dockerfile there names the context as written and the repo path.
    let (_, f) = load_with("app", app, &[("app/README", "x")], &strict(&[]));
    assert_eq!(
        f.errors[0].message,
        "no `docker/Dockerfile` in the build context `../../app` (app/docker/Dockerfile is not in the repo)"
    );
    // Never out of the repo.
    let out = "services:\n  web:\n    build: ../../..\n";
    let (_, f) = load_with("app", out, &[], &strict(&[]));
    assert!(
        f.errors[0].message.contains("leaves the repo"),
        "{:#?}",
        f.errors
    );
}

/// What the reviewer found: a value merely present in the compose text (an image name, a
/// comment) is still a secret, and so is a secret-named variable whatever its value.
#[test]
fn secrets_in_the_compose_text_or_with_secret_names_stay_blanked() {
    let text = "# MyPassw0rd1 is the example\nservices:\n  postgres:\n    image: postgres:15\n    mem_limit: ${TOKEN}\n    cpus: ${DB_PASSWORD}\n";
    let vars = strict(&[("DB_PASSWORD", "postgres"), ("TOKEN", "Passw0rd")]);
    let (_, f) = load_with("app", text, &[], &vars);
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    for e in &shown {
        assert!(!e.contains("`postgres`") && !e.contains("Passw0rd"), "{e}");
    }
}
