#!/bin/sh
# A PostgreSQL 15 server from Debian's package, as the official image does it:
# initdb on first start, a user and a database, trust inside the network.
set -eu
mkdir -p "$PGDATA" /run/postgresql && chown postgres:postgres "$PGDATA" /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  su postgres -c "initdb -D $PGDATA --auth=trust" >/dev/null
  printf "host all all 0.0.0.0/0 trust\n" >> "$PGDATA/pg_hba.conf"
  su postgres -c "pg_ctl -D $PGDATA -w start" >/dev/null
  su postgres -c "psql -q -c \"CREATE USER $POSTGRES_USER\""
  su postgres -c "psql -q -c \"CREATE DATABASE $POSTGRES_DB OWNER $POSTGRES_USER\""
  su postgres -c "pg_ctl -D $PGDATA -w stop" >/dev/null
fi
exec su postgres -c "exec postgres -D $PGDATA -c listen_addresses='*'"
