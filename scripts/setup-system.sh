#!/usr/bin/env bash
# Install the system programs the netns lab and the test suite need, on Debian or Ubuntu,
# as root. Installs only what is missing; running it twice changes nothing.
set -euo pipefail

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v setpriv >/dev/null || need+=(util-linux)
command -v pdns_server >/dev/null || need+=(pdns-server)
[ -e /usr/lib/x86_64-linux-gnu/pdns/libbindbackend.so ] || ls /usr/lib/*/pdns/libbindbackend.so >/dev/null 2>&1 || need+=(pdns-backend-bind)
command -v unbound >/dev/null || need+=(unbound)
# the production-shaped DNS profile (lab up --resolvers dnsmasq,pdns-recursor): the bare
# dnsmasq binary (dnsmasq-base: no system service of its own) and the PowerDNS Recursor
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v pdns_recursor >/dev/null || need+=(pdns-recursor)
command -v dig >/dev/null || need+=(dnsutils)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v shellcheck >/dev/null || need+=(shellcheck)
# the TLS tests of the HTTP client make their throwaway CA and certificates with it
command -v openssl >/dev/null || need+=(openssl)
# the JUnit XML gameday writes is checked against a schema in the tests
command -v xmllint >/dev/null || need+=(libxml2-utils)
# the autonomous-HA profile (lab up --ha patroni): Patroni and a single-member etcd witness
command -v patroni >/dev/null || need+=(patroni)
command -v etcd >/dev/null || need+=(etcd-server)
# the Redis profile (lab up --store redis-sentinel): a Redis per region, Sentinels as its
# failover manager
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then
    echo "setup: system packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need[*]}: run as root (sudo make setup)" >&2
    exit 1
fi
echo "setup: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101: do not start the packages' own services (pdns, unbound, pdns-recursor,
# postgresql, redis):
# the lab runs its own instances inside namespaces.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "setup: installed ${need[*]}"
