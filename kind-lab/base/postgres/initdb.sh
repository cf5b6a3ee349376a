#!/usr/bin/env bash
# Sourced by the official image's entrypoint once, after initdb on an empty volume: let the other
# region's standby (and pg_rewind) connect for replication with the password.
# shellcheck disable=SC2154  # PGDATA comes from the image's entrypoint
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
