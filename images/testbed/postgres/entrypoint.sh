#!/bin/sh
set -eu
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}

auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    if [ "$auth" = trust ]; then
        printf '%s' "${POSTGRES_PASSWORD:-unused}" > "$pwfile"
    else
        : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust (the official image's contract)}"
        printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    fi
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host="$auth" >/dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all $auth" >> "$PGDATA/pg_hba.conf"
    pg_ctl --silent --wait --options="-c listen_addresses=''" start
    if [ "$db" != postgres ]; then
        psql --username="$user" --dbname=postgres --quiet --set ON_ERROR_STOP=1 --command "CREATE DATABASE \"$db\""
    fi
    for init in /docker-entrypoint-initdb.d/*; do
        case "$init" in
            *.sql) psql --username="$user" --dbname="$db" --quiet --set ON_ERROR_STOP=1 --file="$init" ;;
            *.sh) . "$init" ;;
        esac
    done
    pg_ctl --silent --wait --mode=fast stop
    echo "PostgreSQL init process complete; ready for start up."
fi
exec postgres
