#!/usr/bin/env bash
# Start this region's PostgreSQL in the role ConfigMap gameday-db names, mounted at
# /etc/gameday-db (keys: role, primary_host). Read once, at container start:
#   primary  start as is (the official image's entrypoint runs initdb on an empty volume).
#   standby  follow primary_host: an empty volume is filled by pg_basebackup; a volume that was
#            a primary (no standby.signal) is rewound with pg_rewind (after a CHECKPOINT on
#            the new primary), or re-copied when rewind fails. This is the failback resync.
#   fenced   do not start PostgreSQL at all: an old primary that must not come back writable.
# To change a region's role: patch the ConfigMap, then delete pod postgres-0.
set -euo pipefail

role=$(cat /etc/gameday-db/role)
primary_host=$(cat /etc/gameday-db/primary_host 2>/dev/null || true)
: "${PGDATA:?}" "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}"
export PGPASSWORD=$POSTGRES_PASSWORD
upstream="host=$primary_host port=5432 user=$POSTGRES_USER application_name=${GAMEDAY_REGION:-standby}"

log() { echo "gameday-postgres: $*" >&2; }

base_backup() {
    log "pg_basebackup from $primary_host"
    rm -rf "$PGDATA"
    install -d -o postgres -g postgres -m 700 "$PGDATA"
    gosu postgres pg_basebackup -d "$upstream" -D "$PGDATA" -R -X stream -c fast
}

wait_for_primary() {
    until pg_isready -q -h "$primary_host" -p 5432; do
        log "waiting for the primary at $primary_host"
        sleep 1
    done
}

case "$role" in
    fenced)
        log "fenced: PostgreSQL is not started in this region"
        trap 'exit 0' TERM INT
        while :; do sleep 1 & wait $!; done
        ;;
    primary)
        ;;
    standby)
        [[ -n $primary_host ]] || { log "role standby needs primary_host in gameday-db"; exit 1; }
        install -d -o postgres -g postgres -m 700 "$PGDATA"
        wait_for_primary
        if [[ ! -s $PGDATA/PG_VERSION ]]; then
            base_backup
        elif [[ ! -f $PGDATA/standby.signal ]]; then
            log "was a primary: pg_rewind from $primary_host"
            psql -d "$upstream dbname=postgres" -c CHECKPOINT
            if ! gosu postgres pg_rewind --target-pgdata="$PGDATA" \
                --source-server="$upstream dbname=postgres" --write-recovery-conf --progress; then
                log "pg_rewind failed: fresh base backup instead"
                base_backup
            fi
        fi
        ;;
    *)
        log "unknown role '$role' in ConfigMap gameday-db (primary, standby or fenced)"
        exit 1
        ;;
esac

# Settings on the command line win over postgresql.auto.conf, which pg_rewind copies from the
# other member.
args=(postgres
    -c listen_addresses='*'
    -c wal_level=replica
    -c wal_log_hints=on
    -c max_wal_senders=10
    -c wal_keep_size=256MB
    -c hot_standby=on)
if [[ $role == standby ]]; then
    args+=(-c "primary_conninfo=$upstream password=$POSTGRES_PASSWORD")
fi
exec docker-entrypoint.sh "${args[@]}"
