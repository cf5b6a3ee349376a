"""The application canary's configuration (issue 23): its write template, read-back, writers
and deadline, parsed once in GamedaySettings. Each bad input is one line naming the key and
the fix, and stops the run before anything is touched (the control parses the settings
first)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution

from gameday import control
from gameday.foundation.errors import ConfigError
from gameday.foundation.settings import GamedaySettings, ReadBack, WriteTemplate
from tests.unit import fakes

LAB_LIKE = {
    "write": {"method": "POST", "path": "/canary/{seq}",
              "headers": {"X-Canary-Writer": "{writer}"}},
    "read_back": {"path": "/canary?since={since}&limit={limit}", "page_size": 500},
}


def parse(app_canary: Any) -> GamedaySettings:
    return GamedaySettings.from_chaos({"app_canary": app_canary})


def test_no_app_canary_by_default() -> None:
    assert GamedaySettings.from_chaos({}).app_canary is None
    assert parse({}).app_canary is None


def test_the_lab_s_endpoints_parse_with_their_defaults() -> None:
    canary = parse(LAB_LIKE).app_canary
    assert canary is not None
    assert canary.write == WriteTemplate(method="POST", target="/canary/{seq}",
                                         headers=(("X-Canary-Writer", "{writer}"),))
    assert canary.read_back == ReadBack(target="/canary?since={since}&limit={limit}",
                                        page_size=500)
    assert (canary.writers, canary.deadline_s) == (2, 3.0)
    assert canary.read_back.page(41) == "/canary?since=41&limit=500"


def test_a_template_fills_seq_and_writer_everywhere_and_keeps_json_braces() -> None:
    canary = parse({
        "write": {"method": "put", "url": "https://shop.example/api/orders/{seq}",
                  "body": '{"id": "{seq}", "by": {"writer": "{writer}"}}',
                  "headers": {"Idempotency-Key": "gd-{seq}", "X-Writer": "{writer}"}},
        "read_back": {"url": "https://shop.example/api/canary?after={since}"},
        "writers": "3", "deadline_s": 1.5,
    }).app_canary
    assert canary is not None and (canary.writers, canary.deadline_s) == (3, 1.5)
    method, target, headers, body = canary.write.render(1700000000000001, 2)
    assert (method, target) == ("PUT", "https://shop.example/api/orders/1700000000000001")
    assert headers == {"Idempotency-Key": "gd-1700000000000001", "X-Writer": "2"}
    assert body is not None
    assert json.loads(body) == {"id": "1700000000000001", "by": {"writer": "2"}}
    # the seq only in a header is an idempotency key all the same
    only_header = {**LAB_LIKE, "write": {"path": "/orders",
                                         "headers": {"Idempotency-Key": "{seq}"}}}
    assert parse(only_header).app_canary is not None


@pytest.mark.parametrize(("app_canary", "message"), [
    # the bad input: a write template without {seq}
    ({**LAB_LIKE, "write": {"method": "POST", "path": "/canary",
                            "headers": {"X-Canary-Writer": "{writer}"}}},
     r"'app_canary.write' has no \{seq\} in its path, body or headers: put the sequence "
     r"number in it \(e.g. path /canary/\{seq\}\)"),
    ({**LAB_LIKE, "write": {"path": "/canary/{sequence}"}},
     r"'app_canary.write.path' names \{sequence\}: a template may name only \{seq\} and "
     r"\{writer\}"),
    ({**LAB_LIKE, "write": {"method": "GET", "path": "/canary/{seq}"}},
     r"'app_canary.write.method' must be one of POST, PUT, PATCH"),
    ({**LAB_LIKE, "write": {"path": "canary/{seq}"}},
     r"'app_canary.write.path' must start with '/'"),
    ({**LAB_LIKE, "write": {"path": "/canary/{seq}", "url": "http://x/{seq}"}},
     r"'app_canary.write' needs 'path' .* or 'url'"),
    ({**LAB_LIKE, "write": {"url": "ftp://x/{seq}"}},
     r"'app_canary.write.url' must be an http:// or https:// URL"),
    ({**LAB_LIKE, "write": {"path": "/c", "body": {"seq": "{seq}"}}},
     r"'app_canary.write.body' must be text"),
    ({**LAB_LIKE, "write": {"path": "/c/{seq}", "headers": ["X-Seq"]}},
     r"'app_canary.write.headers' must map header names to text"),
    ({**LAB_LIKE, "write": {"path": "/c/{seq}", "verb": "POST"}},
     r"'app_canary.write' has no key 'verb': choose from method, path, url"),
    ({**LAB_LIKE, "read_back": {"path": "/canary"}},
     r"'app_canary.read_back' has no \{since\}: page the read-back"),
    ({**LAB_LIKE, "read_back": {"path": "/canary?since={since}&n={count}"}},
     r"'app_canary.read_back.path' names \{count\}: a template may name only \{since\} "
     r"and \{limit\}"),
    ({**LAB_LIKE, "read_back": {"path": "/canary?since={since}", "page_size": 0}},
     r"'app_canary.read_back.page_size' must be a whole number >= 1"),
    ({"write": LAB_LIKE["write"]}, r"'app_canary.read_back' must be an object"),
    ({"read_back": LAB_LIKE["read_back"]}, r"'app_canary.write' must be an object"),
    ({**LAB_LIKE, "writers": 0}, r"'app_canary.writers' must be a whole number >= 1"),
    ({**LAB_LIKE, "deadline_s": 0}, r"'app_canary.deadline_s' must be a number of seconds"),
    ({**LAB_LIKE, "deadline_s": "nan"}, r"'app_canary.deadline_s' must be a finite number"),
    ({**LAB_LIKE, "writers": "two"},
     r"'app_canary.writers' must be a number, got 'two': fix it in the experiment$"),
    ("POST /canary/{seq}", r"'app_canary' must be an object with 'write' and 'read_back'"),
])
def test_bad_input_is_one_line_naming_the_key_and_the_fix(app_canary: Any,
                                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse(app_canary)
    assert "\n" not in str(err.value)


def test_a_template_without_seq_stops_the_run_before_anything(tmp_path: Path) -> None:
    cfg = {"lab_file": str(fakes.write_lab(tmp_path)), "reports_dir": str(tmp_path / "r"),
           "app_canary": {**LAB_LIKE, "write": {"path": "/canary"}}}
    with pytest.raises(InterruptExecution, match=r"has no \{seq\}") as err:
        control.before_experiment_control({"title": "t"}, configuration=cfg)
    assert "\n" not in str(err.value)
    # nothing asked of the lab, no run started
    assert fakes.world(cfg["lab_file"]).calls == [] and not (tmp_path / "r").exists()
