#!/bin/sh
# First start: initdb into $PGDATA, create role and database `isletnet` with DB_PASSWORD, allow
# password (scram) logins from the compose network. Later starts reuse the data as it is.
# SIGINT (the image's STOPSIGNAL) is PostgreSQL's "fast shutdown": no lost commits.
set -eu
# Swarm hands secrets over as files (`NAME_FILE=/run/secrets/...`); compose as values.
for name in DB_PASSWORD; do
  eval "file=\${${name}_FILE:-}"
  if [ -n "$file" ] && eval "[ -z \"\${$name:-}\" ]"; then
    export "$name=$(cat "$file")"
  fi
done
: "${DB_PASSWORD:?DB_PASSWORD is required}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "isletnet-queue: creating the database cluster in $PGDATA"
  pwfile=$(mktemp)
  printf '%s' "$DB_PASSWORD" > "$pwfile"
  initdb --pgdata="$PGDATA" --username=postgres --pwfile="$pwfile" --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # A private start on the socket only, to create the role before anyone can connect.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
  psql --quiet --username=postgres --dbname=postgres --set=ON_ERROR_STOP=1 --set=password="$DB_PASSWORD" <<'SQL'
CREATE ROLE isletnet LOGIN PASSWORD :'password';
CREATE DATABASE isletnet OWNER isletnet;
SQL
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
fi
exec postgres -c listen_addresses='*' -c max_connections="${DB_MAX_CONNECTIONS:-100}" "$@"
