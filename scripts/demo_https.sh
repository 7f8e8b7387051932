# The HTTPS front door of `scripts/demo https`, sourced by scripts/demo (not run on its own):
# Pebble (Let's Encrypt's test CA, validating HTTP-01 for real) with pebble-challtestsrv as its
# DNS (every name -> 127.0.0.1), and an nginx in a private prefix under $https (never the
# machine's /etc/nginx), on fixed loopback-friendly ports. Each process is started once and
# found again by its pid file, checked against its command line (which names our own files),
# so a second run reuses what runs; `https_stop` stops exactly those processes.
# After ../shared/recipes/acme-pebble.sh.

https=$demo/https
http_port=${DEMO_HTTP_PORT:-18080}
https_port=${DEMO_HTTPS_PORT:-18443}
acme_port=${DEMO_ACME_PORT:-18400}
pebble_mgmt_port=${DEMO_PEBBLE_MGMT_PORT:-18401}
dns_port=${DEMO_DNS_PORT:-18053}
dns_mgmt_port=${DEMO_DNS_MGMT_PORT:-18055}
domain=api.example.test
nginx_bin=/usr/sbin/nginx

# running NAME PATTERN: the pid in $https/NAME.pid when that process runs and its command line
# holds PATTERN (a path of ours), else nothing.
running() {
  local pidfile=$https/$1.pid pid
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
  echo "$pid"
}

# stop_named NAME PATTERN: TERM (then KILL after 5 s) the process `running` finds.
stop_named() {
  local pid
  pid=$(running "$1" "$2") || { rm -f "$https/$1.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$https/$1.pid"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$what did not come up; logs in $https" >&2; return 1
}

# Pebble's API certificate: Debian's package ships none. Made once, kept.
pebble_api_cert() {
  local p=$https/pebble
  [ -s "$p/api.pem" ] && return 0
  mkdir -p "$p"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=gitmoor demo pebble API CA" -keyout "$p/api-ca.key" -out "$p/api-ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$p/api.key" -out "$p/api.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$p/api.ext"
  openssl x509 -req -in "$p/api.csr" -CA "$p/api-ca.pem" -CAkey "$p/api-ca.key" -CAcreateserial \
    -days 3650 -extfile "$p/api.ext" -out "$p/api.pem" 2>/dev/null
}

https_start() {
  umask 022
  mkdir -p "$https"
  # nginx's workers run as nobody: they must get through every parent into the webroot.
  chmod 755 "$demo" "$https"
  pebble_api_cert
  local p=$https/pebble
  if ! running challtestsrv "127.0.0.1:$dns_mgmt_port" >/dev/null; then
    setsid pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
      -dns01 "127.0.0.1:$dns_port" -http01 "" -https01 "" -tlsalpn01 "" \
      -management "127.0.0.1:$dns_mgmt_port" \
      >"$p/challtestsrv.log" 2>&1 </dev/null &
    echo $! >"$https/challtestsrv.pid"
  fi
  wait_for 10 "pebble-challtestsrv" curl -s -o /dev/null "http://127.0.0.1:$dns_mgmt_port/"
  if ! running pebble "$p/pebble-config.json" >/dev/null; then
    cat >"$p/pebble-config.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$acme_port", "managementListenAddress": "127.0.0.1:$pebble_mgmt_port",
  "certificate": "$p/api.pem", "privateKey": "$p/api.key", "httpPort": $http_port, "tlsPort": $https_port,
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
    # A new Pebble has a new root: certificates of an earlier one are not trusted by it. Drop
    # them, so that gitmoor asks this one (the site goes back to its HTTP vhost meanwhile).
    rm -rf "$https/letsencrypt"
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 setsid pebble \
      -config "$p/pebble-config.json" -dnsserver "127.0.0.1:$dns_port" \
      >"$p/pebble.log" 2>&1 </dev/null &
    echo $! >"$https/pebble.pid"
  fi
  wait_for 30 "Pebble's ACME directory" curl -fsS --cacert "$p/api-ca.pem" "https://127.0.0.1:$acme_port/dir"
  # The root the issued certificates chain to (Pebble makes one per start).
  curl -fsS --cacert "$p/api-ca.pem" "https://127.0.0.1:$pebble_mgmt_port/roots/0" >"$https/pebble-root.pem"

  local d=$https/nginx
  if ! running nginx "$d/nginx.conf" >/dev/null; then
    mkdir -p "$d/logs" "$d/tmp" "$d/sites"
    chmod 755 "$d"
    cat >"$d/nginx.conf" <<CONF
# The demo's own nginx: its prefix, pid and logs under $d; gitmoor owns $d/sites.
worker_processes 1;
pid $https/nginx.pid;
error_log $d/logs/error.log info;
events { worker_connections 128; }
http {
    access_log $d/logs/access.log;
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    default_type text/plain;
    server {
        listen $http_port default_server;
        location / { return 404 "no such site\n"; }
    }
    include $d/sites/*.conf;
}
CONF
    "$nginx_bin" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log"
  fi
  wait_for 10 "the demo's nginx" curl -s -o /dev/null "http://127.0.0.1:$http_port/"
  echo "https: Pebble on 127.0.0.1:$acme_port, its DNS on 127.0.0.1:$dns_port, nginx on :$http_port and :$https_port (prefix $d)"
}

# gitmoor's config blocks for this world.
https_config() {
  local d=$https/nginx le=$https/letsencrypt
  cat <<YAML
nginx:
  sites_dir: $d/sites
  binary: $nginx_bin
  prefix: $d
  conf: $d/nginx.conf
  args: ["-e", "$d/logs/error.log"]
  acme_webroot: $https/acme
  http_port: $http_port
  https_port: $https_port
  ipv6: false
letsencrypt:
  email: admin@example.test
  server: https://127.0.0.1:$acme_port/dir
  config_dir: $le/config
  work_dir: $le/work
  logs_dir: $le/logs
  ca_bundle: $https/pebble/api-ca.pem
  host_addresses: [127.0.0.1]
  dns_server: 127.0.0.1:$dns_port
YAML
}

https_stop() {
  [ -d "$https" ] || return 0
  stop_named nginx "$https/nginx/nginx.conf"
  stop_named pebble "$https/pebble/pebble-config.json"
  stop_named challtestsrv "127.0.0.1:$dns_mgmt_port"
}

# curl NAME's HTTPS with only Pebble's root trusted, the name resolved to loopback.
https_curl() {
  curl -fsS --cacert "$https/pebble-root.pem" --resolve "$domain:$https_port:127.0.0.1" "$@"
}
