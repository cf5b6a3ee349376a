"""Secrets the Chaos Toolkit way: the database password and Kubernetes credentials from the
experiment's `secrets` override the descriptor (whose password becomes optional); the
Kubernetes credentials are laid over each region's kubeconfig context, not put in its
place; and a missing or malformed secret is one line naming the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError
from gameday.foundation.settings import GamedaySettings
from gameday.labs.kubernetes.client import Kube
from gameday.labs.kubernetes.driver import KubernetesDriver
from tests.unit import fakes

ROOT = Path(__file__).resolve().parents[2]


def _lab_without_password(tmp_path: Path) -> Path:
    data = fakes.descriptor_dict()
    del data["database"]["password"]
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(data))
    return path


def test_the_documented_descriptor_has_no_password_and_is_valid() -> None:
    data = json.loads((ROOT / "docs" / "examples" / "your-environment.lab.json").read_text())
    assert "password" not in data["database"]
    descriptor.validate(data, source="your-environment.lab.json")  # the schema accepts it
    lab = descriptor.from_dict(data, password="from-secrets")
    assert lab.database.password == "from-secrets"


@pytest.mark.parametrize("secrets", [
    {"gameday": {"db_password": "s3cret-from-vault"}},  # what a control receives: every scope
    {"db_password": "s3cret-from-vault"},  # what an activity declaring ["gameday"] receives
])
def test_the_password_from_secrets_overrides_the_descriptor(tmp_path: Path, secrets) -> None:
    cfg = {"lab_file": str(fakes.write_lab(tmp_path))}  # its descriptor says "not-used"
    lab = GamedaySettings.from_chaos(cfg, secrets).load_lab()
    assert lab.database.password == "s3cret-from-vault"
    assert "s3cret" not in repr(GamedaySettings.from_chaos(cfg, secrets)) + repr(lab)
    without = GamedaySettings.from_chaos(cfg, None).load_lab()
    assert without.database.password == "not-used"


def test_no_password_anywhere_is_one_line_naming_both_ways(tmp_path: Path) -> None:
    cfg = {"lab_file": str(_lab_without_password(tmp_path))}
    with pytest.raises(ConfigError, match="no database password: give it in the experiment's "
                                          "secrets .* or as database.password") as err:
        GamedaySettings.from_chaos(cfg, {}).load_lab()
    assert "\n" not in str(err.value)
    lab = GamedaySettings.from_chaos(cfg, {"gameday": {"db_password": "pw"}}).load_lab()
    assert lab.database.password == "pw"


@pytest.mark.parametrize(("secrets", "message"), [
    ({"gameday": {"db_password": ""}}, "'db_password' .* must be a non-empty string"),
    ({"k8s": {"KUBERNETES_HOST": "https://x"}}, "'KUBERNETES_HOST' .* is not one gameday uses"),
])
def test_bad_secrets_are_refused(tmp_path: Path, secrets, message: str) -> None:
    cfg = {"lab_file": str(fakes.write_lab(tmp_path))}
    with pytest.raises(ConfigError, match=message):
        GamedaySettings.from_chaos(cfg, secrets)


def _kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": f"kind-{r}", "cluster": {"server": f"https://{r}.example:6443"}}
                     for r in ("region-1", "region-2")],
        "users": [{"name": "u", "user": {"token": "from-kubeconfig"}}],
        "contexts": [{"name": f"kind-{r}", "context": {"cluster": f"kind-{r}", "user": "u"}}
                     for r in ("region-1", "region-2")],
        "current-context": "kind-region-1",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))


def test_kubernetes_secrets_are_merged_with_each_context(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _kubeconfig(tmp_path, monkeypatch)
    kube = Kube(["kind-*"], credentials={"KUBERNETES_API_KEY": "from-secrets",
                                         "KUBERNETES_VERIFY_SSL": "false"})
    for region in ("region-1", "region-2"):
        with kube.cluster(f"kind-{region}") as api:
            c = api.configuration
            # the context's own server stays; the secret's token and TLS setting are laid over
            assert c.host == f"https://{region}.example:6443"
            assert c.auth_settings()["BearerToken"]["value"] == "Bearer from-secrets"
            assert c.verify_ssl is False
    with Kube(["kind-*"]).cluster("kind-region-2") as api:  # no secrets: the kubeconfig's
        assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer from-kubeconfig"


def test_kubernetes_secrets_reach_the_driver_through_the_settings(tmp_path: Path) -> None:
    data = fakes.descriptor_dict()
    for i, r in enumerate(data["regions"]):
        r.update(driver="kubernetes", kube_context=f"kind-region-{i + 1}", namespace="gameday")
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(data))
    secrets = {"gameday": {"db_password": "pw"}, "k8s": {"KUBERNETES_API_KEY": "tok"}}
    lab = GamedaySettings.from_chaos({"lab_file": str(path)}, secrets).load_lab()
    assert "tok" not in repr(lab)
    driver = KubernetesDriver.from_settings(lab, GamedaySettings.from_chaos({}))
    assert driver.kube.credentials == {"KUBERNETES_API_KEY": "tok"}
