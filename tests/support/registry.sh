#!/usr/bin/env bash
# A real image registry on loopback with htpasswd auth (Debian's docker-registry, distribution 2.8),
# for tests of pulls with credentials, refusals without them, and tags that move.
# Usage: registry.sh DIR PORT REPO — starts it in the background (its own session, so the test kills
# it by PID), logs in with `docker --config DIR/docker-config` (user test / password secret: that
# writes DIR/docker-config/config.json, the credentials file format gitmoor reads), pushes
# example-busybox:1 as 127.0.0.1:PORT/REPO:1, removes that local tag again, and prints "PID".
# Docker treats 127.0.0.0/8 registries as insecure (plain HTTP) by default: no daemon config needed.
# Needs Debian's docker-registry and apache2-utils (htpasswd); scripts/setup installs them.
set -euo pipefail
dir=${1:?usage: registry.sh DIR PORT REPO}; port=${2:?port}; repo=${3:?repo}
for tool in docker-registry htpasswd curl; do
  command -v "$tool" >/dev/null || { echo "registry.sh: $tool is missing; run scripts/setup (apt-get install docker-registry apache2-utils curl)" >&2; exit 1; }
done
mkdir -p "$dir/data" "$dir/docker-config"
htpasswd -Bbn test secret >"$dir/htpasswd"
cat >"$dir/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
auth: {htpasswd: {realm: test, path: $dir/htpasswd}}
YAML
setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null & pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT   # a failed set-up leaves no registry behind
up=0
for _ in $(seq 80); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" = 401 ]; then up=1; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ $up = 0 ]; then kill "$pid" 2>/dev/null || true; echo "registry.sh: registry did not start:" >&2; cat "$dir/registry.log" >&2; exit 1; fi
echo secret | docker --config "$dir/docker-config" login -u test --password-stdin "127.0.0.1:$port" >/dev/null 2>&1
docker tag example-busybox:1 "127.0.0.1:$port/$repo:1"
docker --config "$dir/docker-config" push -q "127.0.0.1:$port/$repo:1" >/dev/null
docker rmi "127.0.0.1:$port/$repo:1" >/dev/null
trap - EXIT
echo "$pid"
