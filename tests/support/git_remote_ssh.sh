#!/usr/bin/env bash
# Adapted from the shared recipe git-ssh-remote.sh for gitmoor's tests (tests/git_source.rs): no
# package installs here, PORT=… in the environment picks the port, the login user is the current one.
# An SSH git remote on loopback: a second, private sshd (Debian's openssh-server) that never uses
# the machine's own /etc/ssh or its sshd. Its config, host key, pid file, log and authorized_keys all
# live under DIR; it listens on 127.0.0.1 at a random free port and accepts only publickey auth.
# Usage: git-ssh-remote.sh DIR         start (idempotent: if it already runs, reprints its line)
#        git-ssh-remote.sh DIR stop    stop that sshd (by the PID in DIR/sshd.pid, checked) and keep DIR
# Prints one line for `eval`:
#   URL=ssh://root@127.0.0.1:PORT/DIR/repo.git KEY=DIR/id_ed25519 KNOWN_HOSTS=DIR/known_hosts PID=…
#   PORT=… HOSTKEY_SHA256=SHA256:… RSA_KEY=DIR/id_rsa PASS_KEY=DIR/id_ed25519_pass PASSPHRASE=…
# The bare repo has branch main with one commit (compose.yaml); the three keys are all authorised,
# each restricted to git-shell (`restrict,command="git-shell -c \"$SSH_ORIGINAL_COMMAND\""`).
# The login user is the current one (root here): a root sshd can only log into real accounts, and a dedicated account means
# editing /etc/passwd, unlocking it (with UsePAM no sshd refuses a `!` shadow entry even for keys)
# and chowning the repo. The forced git-shell command keeps the keys to upload-pack/receive-pack.
# CLI: GIT_SSH_COMMAND="ssh -i $KEY -o UserKnownHostsFile=$KNOWN_HOSTS -o IdentitiesOnly=yes" git clone $URL
# DIR must be an absolute-able path without spaces.
set -euo pipefail
dir=${1:?usage: git-ssh-remote.sh DIR [stop]}; mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
passphrase=${PASSPHRASE:-correct-horse}

ours() { [[ -s $dir/sshd.pid ]] && tr '\0' ' ' <"/proc/$(<"$dir/sshd.pid")/cmdline" 2>/dev/null | grep -q -- "-f $dir/sshd_config"; }
if [[ ${2:-} == stop ]]; then
  if ours; then pid=$(<"$dir/sshd.pid"); kill "$pid"; for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; fi
  rm -f "$dir/sshd.pid"; exit 0
fi

# Needs Debian's openssh-server (the project's setup installs it; tests skip without /usr/sbin/sshd).
[[ -x /usr/sbin/sshd ]] || { echo "git_remote_ssh.sh: /usr/sbin/sshd missing: apt-get install openssh-server" >&2; exit 2; }
mkdir -p /run/sshd 2>/dev/null || true   # privilege-separation dir, compiled into sshd; normally made by the ssh service
user=$(id -un)

key() { [[ -f $dir/$1 ]] || ssh-keygen -q -t "$2" ${3:+-b $3} -N "${4:-}" -C "gitmoor-test-$1" -f "$dir/$1"; }
key ssh_host_ed25519_key ed25519
key id_ed25519 ed25519
key id_rsa rsa 3072
key id_ed25519_pass ed25519 "" "$passphrase"
shell=$(command -v git-shell)
for k in id_ed25519 id_rsa id_ed25519_pass; do
  printf 'restrict,command="%s -c \\"$SSH_ORIGINAL_COMMAND\\"" %s\n' "$shell" "$(cat "$dir/$k.pub")"
done >"$dir/authorized_keys"

if [[ ! -d $dir/repo.git ]]; then
  git init -q --bare -b main "$dir/repo.git"
  seed=$(mktemp -d); git -C "$seed" init -q -b main
  printf 'services:\n  web:\n    image: example-busybox:1\n' >"$seed/compose.yaml"
  git -C "$seed" add . && git -C "$seed" -c user.name=seed -c user.email=seed@example.test commit -qm seed
  git -C "$seed" push -q "$dir/repo.git" main; rm -rf "$seed"
fi

if ! ours; then
  port=${PORT:-$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')}
  cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $user
UsePAM no
# StrictModes walks every parent of authorized_keys; /tmp (1777) would fail it
StrictModes no
AcceptEnv GIT_PROTOCOL
# sshd runs the forced command through root's bash, and Debian's bash sources ~/.bashrc when it sees
# SSH_CLIENT (here pyenv init: +120 ms per fetch; any output would corrupt the git protocol).
# bash skips that when SHLVL says it is not a top-level shell.
SetEnv SHLVL=1
MaxStartups 100:30:200
LogLevel VERBOSE
EOF
  rm -f "$dir/sshd.pid"
  # -D: stay in the foreground (setsid + & makes it a background job that outlives this script)
  setsid /usr/sbin/sshd -D -f "$dir/sshd_config" -p "$port" -E "$dir/sshd.log" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 50); do [[ -s $dir/sshd.pid ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  ours || { echo "sshd did not start, see $dir/sshd.log" >&2; tail -5 "$dir/sshd.log" >&2; exit 1; }
  echo "$port" >"$dir/port"
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >"$dir/known_hosts"
fi
port=$(<"$dir/port")
fp=$(ssh-keygen -lf "$dir/ssh_host_ed25519_key.pub" | cut -d' ' -f2)
echo "URL=ssh://$user@127.0.0.1:$port$dir/repo.git KEY=$dir/id_ed25519 KNOWN_HOSTS=$dir/known_hosts PID=$(<"$dir/sshd.pid") PORT=$port HOSTKEY_SHA256=$fp RSA_KEY=$dir/id_rsa PASS_KEY=$dir/id_ed25519_pass PASSPHRASE=$passphrase"
