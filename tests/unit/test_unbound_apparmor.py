"""unbound under AppArmor, checked without AppArmor: every path the netns lab hands to
/usr/sbin/unbound is allowed by the profile the installed unbound package ships, and
`gameday lab up` names a denial in one line.

The profile is read from the installed package (the file `dpkg -L unbound` lists, checked
against the package's own md5 of it), not from a copy: a profile that changes upstream
changes this test. Its rules are matched here with AppArmor's globbing (apparmor.d(5)); that
the kernel enforces them the same way is what only a machine with AppArmor shows (the
scheduled workflow's netns job, on ubuntu-24.04). unbound and dpkg come with `make setup`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gameday.foundation.errors import LabError
from gameday.labs.netns import apparmor, configs
from gameday.labs.netns import lab as netns_lab
from gameday.labs.netns.processes import Processes

PROFILE_NAME = "usr.sbin.unbound"


def packaged_profile() -> str:
    """/etc/apparmor.d/usr.sbin.unbound as the installed unbound package ships it."""
    if shutil.which("dpkg") is None:
        pytest.fail("dpkg is missing: this check reads the profile of the installed unbound "
                    "package (Debian or Ubuntu; `make setup` installs it)")
    listed = subprocess.run(["dpkg", "-L", "unbound"], capture_output=True, text=True,
                            timeout=30)
    if listed.returncode != 0:
        pytest.fail("the unbound package is not installed: run `make setup`")
    (path,) = [p for p in listed.stdout.split() if p.endswith(f"/apparmor.d/{PROFILE_NAME}")]
    conffiles = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}\\n", "unbound"],
                               capture_output=True, text=True, timeout=30).stdout
    (md5,) = [line.split()[1] for line in conffiles.splitlines() if line.split()[:1] == [path]]
    text = Path(path).read_bytes()
    if hashlib.md5(text).hexdigest() != md5:
        pytest.fail(f"{path} differs from the one the unbound package shipped: this check "
                    "needs the packaged profile (apt-get install --reinstall unbound)")
    return text.decode()


# -- AppArmor file rules and globbing (apparmor.d(5)) ----------------------------------------


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    perms: str
    deny: bool
    owner: bool
    text: str


def glob_to_regex(glob: str) -> str:
    """AppArmor globbing: `**` any characters, `*` any but '/', `?` one but '/', `[...]`,
    and `{a,b}` alternatives (nested, possibly empty)."""
    out, i = [], 0

    def alternatives(start: int) -> tuple[str, int]:
        parts, current, j, depth = [], [], start, 0
        while j < len(glob):
            ch = glob[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                if depth == 0:
                    parts.append("".join(current))
                    return "(?:" + "|".join(glob_to_regex(p) for p in parts) + ")", j + 1
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append("".join(current))
                current = []
                j += 1
                continue
            current.append(ch)
            j += 1
        raise ValueError(f"unbalanced braces in {glob!r}")

    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = glob.index("]", i)
            out.append("[" + glob[i + 1:end] + "]")
            i = end + 1
        elif ch == "{":
            regex, i = alternatives(i + 1)
            out.append(regex)
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


_RULE = re.compile(r"^(?:(audit)\s+)?(?:(deny)\s+)?(?:(owner)\s+)?(/\S*)\s+([rwaxmlkix]+)\s*,$")


def file_rules(profile: str) -> list[Rule]:
    """The path rules of the profile's own body (its #include lines are not followed: the
    local override is the administrator's, and the abstractions name system paths)."""
    rules = []
    for raw in profile.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("#include") else ""
        m = _RULE.match(line)
        if m:
            _, deny, owner, path, perms = m.groups()
            rules.append(Rule(re.compile(glob_to_regex(path)), perms, bool(deny), bool(owner),
                              line))
    return rules


def allows(rules: list[Rule], path: str, need: str, *, owner: bool = True) -> bool:
    """True when some allow rule grants every permission in `need` on `path` (owner rules
    count when the file is the process's own: `owner`) and no deny rule takes one away."""
    granted: set[str] = set()
    for rule in rules:
        if rule.pattern.fullmatch(path) and (owner or not rule.owner):
            if rule.deny:
                if set(need) & set(rule.perms):
                    return False
            else:
                granted |= set(rule.perms)
    if "w" in need and "a" in granted:  # append-only is enough for a log opened to append
        granted.add("w")
    return set(need) <= granted


# -- what the lab hands to unbound -----------------------------------------------------------


class RecordingProcesses(Processes):
    """Processes.start recorded, nothing started."""

    started: list[tuple[str, list[str], dict[str, Any]]] = []

    def start(self, name: str, argv: Any, **kw: Any) -> int:
        RecordingProcesses.started.append((name, list(argv), kw))
        return 0


def handed_to_unbound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """{path: permissions unbound needs on it} for what `start_unbound` writes and starts,
    run with its directory in tmp_path and relocated to where the lab puts it."""
    real = str(configs.UNBOUND_DIR)
    scratch = tmp_path / "unbound-dir"
    monkeypatch.setattr(configs, "UNBOUND_DIR", scratch)
    monkeypatch.setattr(netns_lab, "Processes", RecordingProcesses)
    RecordingProcesses.started = []
    state = tmp_path / "state"
    netns_lab.start_unbound(state)
    ((name, argv, kw),) = RecordingProcesses.started
    assert name == "unbound" and "user" not in kw  # root: the files it opens are its own
    needs: dict[str, str] = {}
    config_path = argv[argv.index("-c") + 1]
    for arg in argv:
        if arg.startswith("/"):
            needs[arg] = "r"
    config = Path(config_path).read_text()
    assert 'username: ""' in config  # it stays root, the owner of the files in its directory
    for key, value in re.findall(r'^\s*([\w-]+):\s*"(/[^"]*)"', config, re.M):
        needs[value.rstrip("/") + "/" if key == "directory" else value] = (
            "w" if key in ("logfile", "pidfile") else "r")
    # its standard output and error: the log file, opened by the lab and inherited; the
    # profile checks the file's real path
    needs[str((state / "logs" / "unbound.log").resolve())] = "w"
    outside = [p for p in needs if not p.startswith(str(scratch))]
    assert outside == [], f"unbound is handed files outside its directory: {outside}"
    return {real + p[len(str(scratch)):]: need for p, need in needs.items()}


def test_every_path_handed_to_unbound_is_allowed_by_the_packaged_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    profile = packaged_profile()
    assert re.search(r"^profile unbound /usr/sbin/unbound\b", profile, re.M)
    rules = file_rules(profile)
    needs = handed_to_unbound(tmp_path, monkeypatch)
    assert len(needs) >= 3, needs  # the config, the working directory, the log
    refused = {p: need for p, need in needs.items() if not allows(rules, p, need)}
    assert refused == {}, f"the unbound package's AppArmor profile denies: {refused}"


def test_profile_check_can_fail():
    """The matcher is real: what main handed to unbound (its checkout's .gameday/) is denied,
    /etc/unbound is read-only, deny rules win, owner rules need the owner."""
    rules = file_rules(packaged_profile())
    assert not allows(rules, "/home/runner/work/gameday/gameday/.gameday/dns/unbound.conf", "r")
    assert not allows(rules, "/root/gameday/.gameday/logs/unbound.log", "w")
    assert allows(rules, "/etc/unbound/unbound.conf", "r")
    assert not allows(rules, "/etc/unbound/unbound.conf", "w")
    assert allows(rules, "/etc/unbound/other.key", "w")  # owner rule
    assert not allows(rules, "/etc/unbound/unbound_control.key", "w")  # audit deny wins
    assert not allows(rules, "/var/lib/unbound/x/unbound_control.pem", "w")
    assert allows(rules, "/var/lib/unbound/x/y.log", "w")
    assert not allows(rules, "/var/lib/unbound/x/y.log", "w", owner=False)
    assert not allows(rules, "/var/lib/unboundx/y.conf", "r")


def test_glob_translation():
    cases = {
        "/{,etc/unbound/}var/lib/unbound/**": ["/var/lib/unbound/a/b",
                                               "/etc/unbound/var/lib/unbound/c"],
        "/etc/unbound/*.key*": ["/etc/unbound/a.key", "/etc/unbound/a.key.pem"],
        "/usr/share/dns/root.*": ["/usr/share/dns/root.hints"],
    }
    for glob, paths in cases.items():
        for path in paths:
            assert re.fullmatch(glob_to_regex(glob), path), (glob, path)
    assert not re.fullmatch(glob_to_regex("/etc/unbound/*.key*"), "/etc/unbound/x/a.key")
    assert not re.fullmatch(glob_to_regex("/a/{b,c}"), "/a/d")


# -- `lab up` names a denial -----------------------------------------------------------------

DENIAL = ('audit: type=1400 audit(1767700000.123:212): apparmor="DENIED" operation="open" '
          'class="file" profile="unbound" name="/home/runner/work/gameday/gameday/.gameday/'
          'dns/unbound.conf" pid=4242 comm="unbound" requested_mask="r" denied_mask="r" '
          'fsuid=0 ouid=0')


def test_a_denial_of_a_lab_program_is_one_line_naming_profile_path_and_fix():
    line = apparmor.denied_line(["/usr/sbin/unbound", "pdns_server"], since=1767699999,
                                read_log=lambda: f"something else\n{DENIAL}\n")
    assert line is not None and "\n" not in line
    assert line.startswith("AppArmor profile 'unbound' denied unbound open "
                           "/home/runner/work/gameday/gameday/.gameday/dns/unbound.conf (r)")
    assert "/etc/apparmor.d/local/" in line
    # older than this lab up, or another program's: not ours to report
    assert apparmor.denied_line(["unbound"], since=1767700001, read_log=lambda: DENIAL) is None
    assert apparmor.denied_line(["etcd"], since=0, read_log=lambda: DENIAL) is None
    assert apparmor.denied_line(["unbound"], since=0, read_log=lambda: "") is None


def test_lab_up_that_fails_names_the_denial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`lab up` failed with a DNS timeout where unbound could not read its config: the error
    is now the denial. Stand-ins: the lab's steps (no root here) and the kernel log."""
    import time

    stamp = f"audit({time.time() + 5:.3f}:1)"
    monkeypatch.setattr(apparmor, "kernel_log",
                        lambda: re.sub(r"audit\([^)]*\)", stamp, DENIAL))
    monkeypatch.setattr(netns_lab, "preflight", lambda ha=None: None)
    monkeypatch.setattr(netns_lab, "is_up", lambda state: False)
    monkeypatch.setattr(netns_lab, "state_dir", lambda: tmp_path / "state")
    downs: list[int] = []
    monkeypatch.setattr(netns_lab, "down", lambda **kw: downs.append(1) or [])

    def dns_never_answers(namespaces: Any) -> None:
        raise LabError("DNS at 198.18.0.54 did not answer shop.gameday.test within 20 s")

    monkeypatch.setattr(netns_lab, "_network", dns_never_answers)
    with pytest.raises(LabError) as info:
        netns_lab.up()
    message = str(info.value)
    assert message.startswith("lab up failed: AppArmor profile 'unbound' denied unbound open ")
    assert "\n" not in message and downs == [1]  # and the half-built lab was taken down
