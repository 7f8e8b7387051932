#!/usr/bin/env bash
# Adapted from the shared recipe git-https-remote.sh for gitmoor's tests (tests/git_source.rs): no
# package installs here, PORT=… in the environment picks the port.
# An HTTPS git remote on loopback with token auth, as GitHub does it (basic auth, user
# x-access-token, password = the token): nginx in a private prefix (never /etc/nginx or a running
# nginx) in front of `git http-backend` through fcgiwrap, TLS from a self-signed CA made under DIR.
# Usage: git-https-remote.sh DIR         start (idempotent: if it already runs, reprints its line)
#        git-https-remote.sh DIR stop    stop nginx and fcgiwrap (PIDs checked against DIR) and keep DIR
# Prints one line for `eval`:
#   URL=https://127.0.0.1:PORT/repo.git TOKEN=… CA=DIR/ca.pem PID=<nginx master> FCGI_PID=… PORT=…
#   HTTP_PORT=… (the same over plain http) CERT=DIR/server.pem USER=x-access-token
# The bare repo DIR/repos/repo.git has branch main with one commit (compose.yaml); pushes work too
# (http-backend allows receive-pack because nginx passes REMOTE_USER).
# CLI: git -c http.sslCAInfo=$CA clone https://x-access-token:$TOKEN@127.0.0.1:PORT/repo.git
# DIR must be a path without spaces. TOKEN=… in the environment picks the token (else random, kept).
set -euo pipefail
dir=${1:?usage: git-https-remote.sh DIR [stop]}; mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

alive() { [[ -s $dir/$1 ]] && tr '\0' ' ' <"/proc/$(<"$dir/$1")/cmdline" 2>/dev/null | grep -q -- "$2"; }
# stop FILE PATTERN [-]: TERM the PID in DIR/FILE if its command line names PATTERN; with "-" its whole
# process group (fcgiwrap -c N forks N children that outlive a TERM to the parent; setsid made it a leader)
stop() { local f=$1 pid; alive "$f" "$2" || { rm -f "$dir/$f"; return 0; }; pid=$(<"$dir/$f"); kill -- "${3:-}$pid"
         for _ in $(seq 50); do kill -0 -- "${3:-}$pid" 2>/dev/null || break; sleep 0.1; done; rm -f "$dir/$f"; }
if [[ ${2:-} == stop ]]; then stop nginx.pid "$dir/nginx.conf"; stop fcgiwrap.pid "$dir/fcgiwrap.sock" -; exit 0; fi

# Needs Debian's nginx and fcgiwrap (the project's setup installs them; tests skip without them).
for bin in /usr/sbin/nginx /usr/sbin/fcgiwrap; do
  [[ -x $bin ]] || { echo "git_remote_https.sh: $bin missing: apt-get install nginx fcgiwrap" >&2; exit 2; }
done
mkdir -p "$dir/logs" "$dir/tmp" "$dir/repos"
chmod 755 "$dir"   # nginx workers run as nobody: they read htpasswd and reach the socket (mktemp -d is 0700)

[[ -s $dir/token ]] || echo "${TOKEN:-gm_$(openssl rand -hex 20)}" >"$dir/token"
token=$(<"$dir/token")
printf 'x-access-token:%s\n' "$(openssl passwd -5 "$token")" >"$dir/htpasswd"

if [[ ! -s $dir/server.pem ]]; then   # CA + server cert for 127.0.0.1 and localhost
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=gitmoor test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 3650 \
    -extfile "$dir/ext.cnf" -out "$dir/server.pem" 2>/dev/null
fi

if [[ ! -d $dir/repos/repo.git ]]; then
  git init -q --bare -b main "$dir/repos/repo.git"
  seed=$(mktemp -d); git -C "$seed" init -q -b main
  printf 'services:\n  web:\n    image: example-busybox:1\n' >"$seed/compose.yaml"
  git -C "$seed" add . && git -C "$seed" -c user.name=seed -c user.email=seed@example.test commit -qm seed
  git -C "$seed" push -q "$dir/repos/repo.git" main; rm -rf "$seed"
fi

# fcgiwrap runs git http-backend as root (the repo's owner: no "dubious ownership"); nginx's workers
# run as nobody, so the socket is made world-writable (it lives in DIR only).
if ! alive fcgiwrap.pid "$dir/fcgiwrap.sock"; then
  rm -f "$dir/fcgiwrap.sock"
  setsid /usr/sbin/fcgiwrap -c 4 -s "unix:$dir/fcgiwrap.sock" </dev/null >>"$dir/logs/fcgiwrap.log" 2>&1 &
  echo $! >"$dir/fcgiwrap.pid"
  for _ in $(seq 50); do [[ -S $dir/fcgiwrap.sock ]] && break; sleep 0.1; done
  chmod 666 "$dir/fcgiwrap.sock"
fi

if ! alive nginx.pid "$dir/nginx.conf"; then
  port=${PORT:-$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')}
  http_port=${HTTP_PORT:-$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')}
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 256; }
http {
  log_format withhost '\$host \$remote_user "\$request" \$status';
  access_log $dir/logs/access.log withhost;
  client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy; fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;
  server {
    listen 127.0.0.1:$port ssl;
    listen 127.0.0.1:$http_port;   # the same repositories over plain http (allow_insecure_transport)
    ssl_certificate $dir/server.pem; ssl_certificate_key $dir/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_max_body_size 0;
    # For the transport's edge cases (tests/git_source.rs): redirects (same server, another
    # origin, down to plain http) and a server that is not Git's smart HTTP.
    location = /moved.git/info/refs { return 301 /repo.git/info/refs\$is_args\$args; }
    location = /elsewhere.git/info/refs { return 302 https://localhost:$port/repo.git/info/refs\$is_args\$args; }
    location = /down.git/info/refs { return 301 http://127.0.0.1:$port/repo.git/info/refs\$is_args\$args; }
    location = /loop.git/info/refs { return 302 /loop.git/info/refs\$is_args\$args; }
    location = /dumb.git/info/refs { default_type text/plain; return 200 "0000000000000000000000000000000000000000 refs/heads/main\\n"; }
    # Branches listed to anyone, the pack only with the token (upload-pack asks for it).
    location = /halfopen.git/info/refs {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $(git --exec-path)/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT $dir/repos;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO /repo.git/info/refs;
      fastcgi_pass unix:$dir/fcgiwrap.sock;
    }
    location = /halfopen.git/git-upload-pack {
      auth_basic "gitmoor test"; auth_basic_user_file $dir/htpasswd;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $(git --exec-path)/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT $dir/repos;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO /repo.git/git-upload-pack;
      fastcgi_param REMOTE_USER \$remote_user;
      fastcgi_pass unix:$dir/fcgiwrap.sock;
    }
    location / {
      auth_basic "gitmoor test"; auth_basic_user_file $dir/htpasswd;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $(git --exec-path)/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT $dir/repos;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO \$uri;
      fastcgi_param REMOTE_USER \$remote_user;
      fastcgi_param GIT_PROTOCOL \$http_git_protocol;
      fastcgi_pass unix:$dir/fcgiwrap.sock;
    }
  }
}
EOF
  rm -f "$dir/nginx.pid"
  /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"   # daemonises; master PID in nginx.pid
  for _ in $(seq 50); do [[ -s $dir/nginx.pid ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  alive nginx.pid "$dir/nginx.conf" || { echo "nginx did not start, see $dir/logs/error.log" >&2; exit 1; }
  echo "$port" >"$dir/port"; echo "$http_port" >"$dir/http_port"
fi
port=$(<"$dir/port"); http_port=$(<"$dir/http_port")
echo "URL=https://127.0.0.1:$port/repo.git TOKEN=$token CA=$dir/ca.pem PID=$(<"$dir/nginx.pid") FCGI_PID=$(<"$dir/fcgiwrap.pid") PORT=$port HTTP_PORT=$http_port CERT=$dir/server.pem USER=x-access-token"
