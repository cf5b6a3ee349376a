#!/usr/bin/env bash
# Start this region's PostgreSQL in the role ConfigMap gameday-db names, mounted at
# /etc/gameday-db (keys: role, primary_host). Read once, at container start:
#   primary  start as is (the official image's entrypoint runs initdb on an empty volume).
#   standby  follow primary_host: an empty volume is filled by pg_basebackup; a volume that was
#            a primary (no standby.signal) or was fenced is rewound with pg_rewind (after a
#            CHECKPOINT on the new primary), or re-copied when rewind fails. This is the
#            failback resync. One line `gameday-postgres: resync=rewind|basebackup|none` says
#            which it did; the kubernetes driver reads it from the pod's log.
#   fenced   an old primary that must not come back writable: PostgreSQL starts as a standby
#            with no upstream (read-only, its rows stay readable for split-brain accounting,
#            its storefront fails /healthz). An empty volume does not start PostgreSQL at all.
# To change a region's role: patch the ConfigMap, then delete pod postgres-0 (the kubernetes
# driver does both for the game day).
# GAMEDAY_DB_CONFIG moves the role directory (the test that runs this script on a host,
# tests/integration/test_kind_postgres_entrypoint.py); the pod leaves it unset.
set -euo pipefail

role_dir=${GAMEDAY_DB_CONFIG:-/etc/gameday-db}
role=$(cat "$role_dir/role")
primary_host=$(cat "$role_dir/primary_host" 2>/dev/null || true)
: "${PGDATA:?}" "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}"
export PGPASSWORD=$POSTGRES_PASSWORD
fenced_marker=$PGDATA/gameday.fenced
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
        if [[ ! -s $PGDATA/PG_VERSION ]]; then
            log "fenced with an empty volume: PostgreSQL is not started in this region"
            trap 'exit 0' TERM INT
            while :; do sleep 1 & wait $!; done
        fi
        log "fenced: read-only standby with no upstream"
        touch "$PGDATA/standby.signal" "$fenced_marker"
        chown postgres:postgres "$PGDATA/standby.signal" "$fenced_marker"
        ;;
    primary)
        if [[ -f $fenced_marker ]]; then
            log "unfenced: starting as the primary again"
            rm -f "$PGDATA/standby.signal" "$fenced_marker"
        fi
        ;;
    standby)
        [[ -n $primary_host ]] || { log "role standby needs primary_host in gameday-db"; exit 1; }
        install -d -o postgres -g postgres -m 700 "$PGDATA"
        wait_for_primary
        resync=none
        if [[ ! -s $PGDATA/PG_VERSION ]]; then
            base_backup
            resync=basebackup
        elif [[ ! -f $PGDATA/standby.signal || -f $fenced_marker ]]; then
            log "was a primary: pg_rewind from $primary_host"
            psql -d "$upstream dbname=postgres" -c CHECKPOINT
            if gosu postgres pg_rewind --target-pgdata="$PGDATA" \
                --source-server="$upstream dbname=postgres" --write-recovery-conf --progress; then
                resync=rewind
            else
                log "pg_rewind failed: fresh base backup instead"
                base_backup
                resync=basebackup
            fi
            rm -f "$fenced_marker"
        fi
        log "resync=$resync"
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
elif [[ $role == fenced ]]; then
    # wins over a primary_conninfo that pg_rewind or pg_basebackup wrote to postgresql.auto.conf
    args+=(-c "primary_conninfo=")
fi
exec docker-entrypoint.sh "${args[@]}"
