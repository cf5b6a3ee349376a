"""Configuration files the netns lab writes for PostgreSQL, PowerDNS and unbound.

Kept apart from the orchestration so a reader can see each service's settings in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gameday.labs.netns import topology as topo


def pg_hba() -> str:
    return (
        "# gameday netns lab: password auth from the lab range and loopback only\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
        "host all all 198.18.0.0/15 scram-sha-256\n"
        # the lab's IPv6 range (--ipv6): a database name's AAAA record is dialled too
        "host all all 2001:2::/48 scram-sha-256\n"
        "host replication all 127.0.0.1/32 scram-sha-256\n"
        "host replication all 198.18.0.0/15 scram-sha-256\n"
    )


def pg_parameters() -> dict[str, str]:
    """Settings of both nodes, in both profiles (the scripted lab writes them to
    postgresql.conf; Patroni keeps them in its DCS so both members agree)."""
    return {
        "wal_level": "replica",
        "max_wal_senders": "10",
        # bounded disk: a soak of back-to-back drills grew each node by its WAL until
        # max_wal_size (1 GB by default) forced a checkpoint
        "wal_keep_size": "128MB",
        "max_wal_size": "192MB",
        "min_wal_size": "64MB",
        "checkpoint_timeout": "60s",
        "wal_log_hints": "on",
        "hot_standby": "on",
        "hot_standby_feedback": "on",
        "wal_receiver_status_interval": "1s",
        "wal_sender_timeout": "5s",
        "wal_receiver_timeout": "5s",
        # a standby whose primary just stopped sleeps this long before it retries, and a
        # promotion during that sleep waited for it: 5 s (the default) of write downtime
        # in a planned switchover, seen here
        "wal_retrieve_retry_interval": "200ms",
        "shared_buffers": "32MB",
        "max_connections": "50",
        "logging_collector": "off",
        "log_min_messages": "warning",
        "synchronous_commit": "on",
    }


def pg_common(replication: str) -> str:
    """Settings shared by both nodes of the scripted lab (copied to the standby by
    pg_basebackup)."""
    lines = ["# gameday netns lab", "listen_addresses = '*'", f"port = {topo.DB_PORT}",
             "unix_socket_directories = ''"]
    lines += [f"{k} = '{v}'" for k, v in pg_parameters().items()]
    lines.append("include_if_exists = 'gameday-node.conf'")
    return "\n".join(lines) + "\n"


def pg_node(*, region: str, replication: str, password: str, delay_ms: float,
            standby: bool) -> str:
    """Settings that belong to one node and must be rewritten after a base backup or rewind.

    A standby reaches its primary through the delay proxy in its own namespace, which is
    where the inter-region latency lives. The primary names the other region as its
    synchronous standby when the lab runs in sync mode."""
    other = topo.other_region(region)
    lines = [f"# node settings of {region}", f"cluster_name = '{region}'"]
    if replication == "sync" and not standby:
        lines.append(f"synchronous_standby_names = '\"{other}\"'")
    else:
        lines.append("synchronous_standby_names = ''")
    if standby:
        conninfo = (
            f"host=127.0.0.1 port={topo.PROXY_PORT} user={topo.DB_USER} "
            f"password={password} application_name={region} connect_timeout=2"
        )
        lines.append(f"primary_conninfo = '{conninfo}'")
    else:
        lines.append("primary_conninfo = ''")
    return "\n".join(lines) + "\n"


def pdns_conf(state: str, *, health_interval_s: float) -> str:
    return "\n".join(
        [
            "launch=bind",
            f"bind-config={state}/dns/named.conf",
            f"local-address={topo.AUTHORITATIVE}",
            "local-port=53",
            "enable-lua-records=yes",
            f"lua-health-checks-interval={max(1, round(health_interval_s))}",
            "security-poll-suffix=",
            "daemon=no",
            "guardian=no",
            f"socket-dir={state}/dns",
            "write-pid=no",
            "disable-syslog=yes",
            "log-timestamp=yes",
            "loglevel=4",
            # every answer fresh from the LUA record: caching here would hide the flip
            "cache-ttl=0",
            "query-cache-ttl=0",
            "negquery-cache-ttl=0",
            "zone-cache-refresh-interval=0",
            "",
        ]
    )


def named_conf(state: str) -> str:
    return f'zone "{topo.ZONE}" {{ type master; file "{state}/dns/{topo.ZONE}.zone"; }};\n'


def zone(*, ttl_s: float, extra: Sequence[str] = ()) -> str:
    """The global name is an active-passive `ifurlup` over both regions' /healthz; `extra`:
    more records (the database names of --db-hostnames)."""
    r1, r2 = topo.address("region-1"), topo.address("region-2")
    ttl = max(0, round(ttl_s))
    url = f"http://{topo.GLOBAL_NAME}:{topo.STOREFRONT_PORT}/healthz"
    lua = f"ifurlup('{url}', {{{{'{r1}'}}, {{'{r2}'}}}}, {{stringmatch='ok', timeout=1}})"
    return "\n".join(
        [
            f"$ORIGIN {topo.ZONE}.",
            f"$TTL {ttl}",
            f"@ IN SOA ns1.{topo.ZONE}. hostmaster.{topo.ZONE}. 1 3600 600 86400 {ttl}",
            f"@ IN NS ns1.{topo.ZONE}.",
            f"ns1 IN A {topo.AUTHORITATIVE}",
            f"resolver IN A {topo.RESOLVER}",
            f"region-1 IN A {r1}",
            f"region-2 IN A {r2}",
            *extra,
            f'shop {ttl} IN LUA A "{lua}"',
            "",
        ]
    )


# unbound's files: its config, its working directory and its log. Under /var/lib/unbound
# because the unbound package loads an AppArmor profile for /usr/sbin/unbound in enforce mode
# (Debian and Ubuntu: /etc/apparmor.d/usr.sbin.unbound), which lets it read only below
# /etc/unbound and /var/lib/unbound, and write only its own files below /var/lib/unbound: a
# config in the checkout's .gameday/ was denied. One lab per machine, so one fixed directory,
# which `lab down` removes.
UNBOUND_DIR = Path("/var/lib/unbound/gameday-lab")


def unbound_conf(directory: str) -> str:
    """A caching resolver that honours TTLs exactly and sends nothing outside the lab; its
    working directory is `directory` (UNBOUND_DIR in the lab)."""
    return f"""server:
    interface: {topo.RESOLVER}
    port: 53
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{directory}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    log-time-ascii: yes
    verbosity: 1
    do-ip6: no
    access-control: 198.18.0.0/15 allow
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-localhost: no
    cache-min-ttl: 0
    prefetch: no
    serve-expired: no
    qname-minimisation: no
    harden-referral-path: no
    local-zone: "." refuse
    local-zone: "test." transparent
    local-zone: "18.198.in-addr.arpa." static
    local-zone: "19.198.in-addr.arpa." static
    domain-insecure: "{topo.ZONE}"
stub-zone:
    name: "{topo.ZONE}"
    stub-addr: {topo.AUTHORITATIVE}
remote-control:
    control-enable: no
"""
