#!/usr/bin/env bash
# Build `example-backend:1`: the seed's backend in miniature. busybox httpd on port 3000 with two CGI
# routes that talk to PostgreSQL through psql and DATABASE_URL (postgres://user:pass@host:5432/db):
#   GET  /cgi-bin/health  -> 200 "ok" when the DB answers `select 1`, 503 otherwise
#   POST /cgi-bin/users   -> body is a name; inserts it (creating the table on first use)
#   GET  /cgi-bin/users   -> one name per line
# Based on example-postgres:15 (postgres-image.sh), which carries psql and busybox.
set -euo pipefail
tag=${1:-example-backend:1}
docker image inspect "$tag" >/dev/null 2>&1 && { echo "$tag already built"; exit 0; }
here=$(cd "$(dirname "$0")" && pwd); bash "$here/postgres.sh" >/dev/null
D=$(mktemp -d); mkdir -p "$D/www/cgi-bin"
cat >"$D/www/cgi-bin/health" <<'SH'
#!/bin/sh
if psql "$DATABASE_URL" -tAc 'select 1' >/dev/null 2>&1; then printf 'Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n'
else printf 'Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\ndb unreachable\n'; fi
SH
cat >"$D/www/cgi-bin/users" <<'SH'
#!/bin/sh
q() { psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -tA "$@"; }
q -c 'create table if not exists users (id serial primary key, name text not null)' >/dev/null 2>&1
if [ "$REQUEST_METHOD" = POST ]; then
  name=$(head -c "${CONTENT_LENGTH:-0}" | tr -cd 'A-Za-z0-9 _.@-')
  if [ -n "$name" ] && echo "insert into users(name) values (:'name');" | q -v name="$name" >/dev/null 2>&1; then
    printf 'Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n%s\n' "$name"
  else printf 'Status: 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nbad name or db error\n'; fi
else
  printf 'Content-Type: text/plain\r\n\r\n'; q -c 'select name from users order by id'
fi
SH
chmod +x "$D/www/cgi-bin/"*
printf 'FROM example-postgres:15\nCOPY www /www\nENTRYPOINT ["httpd","-f","-p","3000","-h","/www"]\n' >"$D/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$D" >/dev/null
rm -rf "$D"
echo "built $tag"
