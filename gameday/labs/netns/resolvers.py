"""The resolvers `lab up --resolvers unbound,dnsmasq,pdns-recursor` adds beside unbound, each
in the DNS namespace on its own address (dnsprofile.RESOLVER_ADDRESSES).

Real users sit behind many resolvers, and those treat TTLs differently. Each is configured as
a site would run it to reach an internal zone: its packaged defaults, the one TTL setting a
site commonly turns on for that software, and what the lab needs (forward gameday.test to the
lab's authoritative server, send nothing outside the lab). They are not tuned to agree: how
long each takes to follow a flip is what the profile is for.

- unbound (the lab's own resolver, configs.unbound_conf): TTLs exactly as served, no stale
  answers. It is what the lab always measured with.
- dnsmasq: `min-cache-ttl=10`, a floor a site sets to spare its upstream from 1-second
  TTLs. dnsmasq caches a shorter TTL as 10 s and answers from its cache with what is left of
  those 10 s: a client behind it can see the old region up to 10 s after the authority
  flipped.
- PowerDNS Recursor: serve-stale (`serve-stale-extensions=240`, the Recursor manual's example:
  up to 2 hours stale), which a site turns on to ride out an unreachable authority (RFC
  8767). It changes nothing while the authority answers; when it does not, the Recursor
  keeps answering the last region it saw, where unbound fails. Its
  packaged `minimum-ttl-override=1` raises a TTL of 0 to 1 s.

`RESOLVER_TTLS` holds those numbers for the descriptor (`dns.resolvers[]`).

Where their files go: AppArmor. Ubuntu confines /usr/sbin/dnsmasq with the profile
`usr.sbin.dnsmasq` (Debian ships the same profile, in complain mode, in apparmor-profiles). It
lets dnsmasq read and write the files directly in /run/dnsmasq/ and nothing in a checkout,
so its config and log live there as /run/dnsmasq/gameday-lab.*; the log is linked from
<state>/logs/dnsmasq.log, as unbound's is (the profile checks an inherited file's real path).
The pdns-recursor package ships no AppArmor profile, so its files stay in
<state>/dns/recursor/.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from gameday.labs.netns import topology as topo
from gameday.labs.netns.processes import Processes

PROGRAMS = {"dnsmasq": "dnsmasq", "pdns-recursor": "pdns_recursor"}
DNSMASQ_MIN_CACHE_TTL_S = 10
RECURSOR_SERVE_STALE_EXTENSIONS = 240  # of 30 s each: 2 hours
RECURSOR_MINIMUM_TTL_OVERRIDE_S = 1  # the packaged default, written out
# per resolver: the TTL floor it caches with, and how long past expiry it may still answer
# when the authority cannot be reached (0: never)
RESOLVER_TTLS: dict[str, dict[str, float]] = {
    "unbound": {"min_ttl_s": 0, "serve_stale_s": 0},
    "dnsmasq": {"min_ttl_s": DNSMASQ_MIN_CACHE_TTL_S, "serve_stale_s": 0},
    "pdns-recursor": {"min_ttl_s": RECURSOR_MINIMUM_TTL_OVERRIDE_S,
                      "serve_stale_s": 30 * RECURSOR_SERVE_STALE_EXTENSIONS},
}
PACKAGES = {"dnsmasq": "dnsmasq-base", "pdns-recursor": "pdns-recursor"}
DNSMASQ_DIR = Path("/run/dnsmasq")  # usr.sbin.dnsmasq: `@{run}/dnsmasq/* rw`
DNSMASQ_PREFIX = "gameday-lab"
DNSMASQ_CREATED = "dns/created-run-dnsmasq"  # under the state directory: `down` removes it


def dnsmasq_conf(address: str) -> str:
    return "\n".join([
        "# gameday netns lab: dnsmasq as a site runs it to forward its internal zone,",
        "# with a TTL floor that spares the upstream from very short TTLs",
        "port=53",
        f"min-cache-ttl={DNSMASQ_MIN_CACHE_TTL_S}",
        f"listen-address={address}",
        "bind-interfaces",
        # nothing outside the lab: no upstream but the lab's zone
        "no-resolv",
        "no-poll",
        "no-hosts",
        f"server=/{topo.ZONE}/{topo.AUTHORITATIVE}",
        "log-facility=-",
        "pid-file=",
        "",
    ])


def dnsmasq_argv() -> list[str]:
    return ["dnsmasq", "--keep-in-foreground", f"--conf-file={dnsmasq_files()['conf']}"]


def dnsmasq_files() -> dict[str, Path]:
    return {"conf": DNSMASQ_DIR / f"{DNSMASQ_PREFIX}.conf",
            "log": DNSMASQ_DIR / f"{DNSMASQ_PREFIX}.log"}


def recursor_conf(directory: Path, address: str) -> str:
    return "\n".join([
        "# gameday netns lab: the PowerDNS Recursor as a site runs it to forward its",
        "# internal zone, serving stale answers while the authority cannot be reached",
        f"local-address={address}",
        "local-port=53",
        # its queries leave from its own address, as on a host of its own
        f"query-local-address={address}",
        f"serve-stale-extensions={RECURSOR_SERVE_STALE_EXTENSIONS}",
        f"minimum-ttl-override={RECURSOR_MINIMUM_TTL_OVERRIDE_S}",
        "allow-from=127.0.0.0/8, 198.18.0.0/15",
        f"forward-zones={topo.ZONE}={topo.AUTHORITATIVE}",
        # nothing outside the lab: no server may be asked but the forwarder (a forwarder is
        # exempt from dont-query), so no root server is ever tried
        "dont-query=0.0.0.0/0, ::/0",
        f"lua-config-file={directory / 'recursor.lua'}",
        f"socket-dir={directory}",
        "daemon=no",
        "write-pid=no",
        "disable-syslog=yes",
        "log-timestamp=yes",
        "quiet=yes",
        "security-poll-suffix=",
        "",
    ])


def recursor_lua() -> str:
    # the lab's zone is unsigned below a root it cannot reach: a negative trust anchor, as
    # a site declares its internal zone (unbound: domain-insecure)
    return f'addNTA("{topo.ZONE}", "the gameday lab zone is unsigned")\n'


def recursor_argv(directory: Path) -> list[str]:
    return ["pdns_recursor", f"--config-dir={directory}"]


def start(state: Path, kind: str, address: str) -> None:
    """Start one of the extra resolvers (not unbound, which `lab up` always starts) on
    `address` (dnsprofile.RESOLVER_ADDRESSES)."""
    procs = Processes(state)
    if kind == "dnsmasq":
        if not DNSMASQ_DIR.exists():
            DNSMASQ_DIR.mkdir(mode=0o755, parents=True)
            marker = state / DNSMASQ_CREATED
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        files = dnsmasq_files()
        files["conf"].write_text(dnsmasq_conf(address))
        files["log"].touch()
        procs.log_dir.mkdir(parents=True, exist_ok=True)
        link = procs.log_dir / "dnsmasq.log"
        link.unlink(missing_ok=True)
        link.symlink_to(files["log"])
        procs.start("dnsmasq", dnsmasq_argv(), netns=topo.DNS.name)
    elif kind == "pdns-recursor":
        directory = state / "dns" / "recursor"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "recursor.conf").write_text(recursor_conf(directory, address))
        (directory / "recursor.lua").write_text(recursor_lua())
        procs.start("pdns-recursor", recursor_argv(directory), netns=topo.DNS.name)
    else:
        raise ValueError(f"no extra resolver {kind!r}")


def remove_files(state: Path) -> list[str]:
    """What `start` left outside the state directory (after the processes are stopped)."""
    removed = []
    for path in dnsmasq_files().values():
        if path.exists():
            path.unlink()
            removed.append(str(path))
    if (state / DNSMASQ_CREATED).exists():
        with contextlib.suppress(OSError):
            DNSMASQ_DIR.rmdir()  # only when empty: a system dnsmasq may use it too
            removed.append(str(DNSMASQ_DIR))
    return removed
