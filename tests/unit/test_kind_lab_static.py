"""kind-lab checked without Docker: scripts (shellcheck, --dry-run), manifests and rendered
overlays (kubernetes-validate), the workflow (GitHub's schema), and the descriptor up.sh writes
(the same schema as the netns lab's).

The tools come from the `test` extra (`make venv` installs it) and shellcheck from
`make setup`; a missing one fails the test with that reason.
What only a Docker host can check is listed in docs/kind-lab.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gameday.foundation import descriptor

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "kind-lab"
WORKFLOW = ROOT / ".github" / "workflows" / "game-day.yml"
K8S_VERSION = "1.34.0"  # kindest/node in versions.env
# kind v0.30.0, pkg/apis/config/defaults/image.go (commit 9a205e8c, tag v0.30.0):
# Image = "kindest/node:v1.34.0@sha256:7416a61b...dc5a"
KIND_NODE_DIGEST = "7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
FIX = "run `make setup` (it installs shellcheck and the venv's `test` extra)"
# (region, Service, its pinned LoadBalancer IP in versions.env)
PINNED = [
    ("region-1", "storefront", "LB_IP_REGION_1_STOREFRONT"),
    ("region-1", "postgres-lb", "LB_IP_REGION_1_POSTGRES"),
    ("region-2", "storefront", "LB_IP_REGION_2_STOREFRONT"),
    ("region-2", "postgres-lb", "LB_IP_REGION_2_POSTGRES"),
]


def tool(name: str) -> str:
    """A tool from the test's venv first (pip-installed ones), then PATH; fail if missing."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"'{name}' is missing: {FIX}")
    return found


def versions() -> dict[str, str]:
    pairs = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (LAB / "versions.env").read_text(), re.M)
    return dict(pairs)


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


# -- shell scripts ----------------------------------------------------------------------------

SCRIPTS = sorted([*LAB.rglob("*.sh"), ROOT / ".ci" / "run", *(ROOT / "scripts").glob("*.sh")])


def test_scripts_pass_shellcheck():
    assert len(SCRIPTS) >= 6
    result = run(tool("shellcheck"), "-x", "--severity=style", *map(str, SCRIPTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_scripts_are_executable():
    for script in (LAB / "up.sh", LAB / "down.sh", ROOT / ".ci" / "run"):
        assert os.access(script, os.X_OK), f"{script} is not executable"


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Any]:
    """PATH with recording stand-ins for every external tool, so that a dry run that executed
    anything would leave a trace; state and descriptor paths inside tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    trace = tmp_path / "executed"
    for name in ("docker", "kind", "kubectl", "curl", "dig", "git", "install", "rm"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{trace}"\nexit 1\n')
        stub.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GAMEDAY_LAB": str(tmp_path / "lab" / "lab.json"),
        "GAMEDAY_KIND_STATE": str(tmp_path / "state"),
        "GAMEDAY_DB_PASSWORD": "s3cret-pw",
        "PYTHON": sys.executable,
    }
    return {"env": env, "trace": trace, "tmp": tmp_path}


def commands(stdout: str) -> list[str]:
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def dry_run_descriptor(stdout: str) -> dict[str, Any]:
    m = re.search(
        r"^--- lab descriptor ---\n(.*?)\n^--- end lab descriptor ---$", stdout, re.M | re.S
    )
    assert m, "up.sh --dry-run printed no lab descriptor"
    return json.loads(m.group(1))


def test_up_dry_run_prints_every_command_and_changes_nothing(sandbox: dict[str, Any]):
    v = versions()
    result = run("bash", str(LAB / "up.sh"), "--dry-run", env=sandbox["env"])
    assert result.returncode == 0, result.stderr
    assert not sandbox["trace"].exists(), sandbox["trace"].read_text()
    assert not (sandbox["tmp"] / "state").exists() and not (sandbox["tmp"] / "lab").exists()
    cmds = commands(result.stdout)
    text = "\n".join(result.stdout.splitlines())
    archive = f"{sandbox['tmp']}/state/storefront-image.tar"
    assert "s3cret-pw" not in result.stdout + result.stderr

    assert cmds[0].startswith("docker network create")
    assert f"--subnet {v['KIND_SUBNET']}" in cmds[0] and cmds[0].endswith(" kind")
    for region in ("region-1", "region-2"):
        assert (
            f"kind create cluster --name {region} --image {v['KIND_NODE_IMAGE']} "
            f"--config {LAB}/kind/{region}.yaml" in text
        )
        # from a single-platform archive, never `kind load docker-image` (kind#3795)
        assert f"kind load image-archive --name {region} {archive}" in text
        assert f"kubectl --context kind-{region} apply -k {LAB}/overlays/{region}" in text
    assert "kind load docker-image" not in text
    assert v["POSTGRES_IMAGE"] not in text  # the kubelets pull it; nothing loads it
    build = next(c for c in cmds if c.startswith("docker buildx build"))
    # into Docker's own store, which works on either image store (no type=docker,dest=:
    # test_no_docker_exporter_to_a_file_without_a_docker_container_builder), then one
    # platform's archive (the daemon's; linux/amd64 is the dry run's stand-in)
    assert "--load" in build and "--output" not in build and "--platform linux/amd64" in build
    assert f"-t {v['STOREFRONT_IMAGE']}" in build and "--provenance=false" in build
    save = f"docker save --platform linux/amd64 -o {archive} {v['STOREFRONT_IMAGE']}"
    assert (cmds.index(build) < cmds.index(save)
            < cmds.index(f"kind load image-archive --name region-1 {archive}"))
    cpk = next(c for c in cmds if c.startswith("docker run -d --name gameday-cloud-provider-kind"))
    assert v["CLOUD_PROVIDER_KIND_IMAGE"] in cpk
    assert f"-e KIND_EXPERIMENTAL_DOCKER_NETWORK={v['KIND_NETWORK']}" in cpk
    unbound = next(c for c in cmds if c.startswith("docker run -d --name gameday-unbound"))
    assert "--no-healthcheck" in unbound  # its HEALTHCHECK asks a public name: always failing
    # The pinned LoadBalancer IPs are what every later step uses.
    for region, svc, key in PINNED:
        assert re.search(
            rf"--context kind-{region} .*get service {svc} .*# until it prints "
            rf"{re.escape(v[key])} \(pinned\)",
            text,
        ), (region, svc)
    # Every kubectl call names its cluster: never the kubeconfig's current context.
    for cmd in cmds:
        for part in cmd.split("|"):
            if part.strip().startswith("kubectl"):
                assert re.search(r"--context kind-region-[12]|--kubeconfig ", part), cmd
    # Region-1's database is up and its LoadBalancer IP known before region-2 follows it.
    i_r1_db = next(i for i, c in enumerate(cmds) if "kind-region-1" in c and "postgres-lb" in c)
    i_r2_cm = next(
        i for i, c in enumerate(cmds) if "kind-region-2" in c and "configmap gameday-db" in c
    )
    assert i_r1_db < i_r2_cm
    assert (
        f"--from-literal=role=standby --from-literal=primary_host={v['LB_IP_REGION_1_POSTGRES']}"
        in cmds[i_r2_cm]
    )
    assert "--from-literal=role=primary" in text
    assert f"< {ROOT}/gameday/labs/storefront.sql" in text  # the one schema of both labs
    assert re.search(
        rf"--network kind --ip {re.escape(v['PDNS_IP'])} .*{re.escape(v['PDNS_IMAGE'])}", text
    )
    assert re.search(rf"--ip {re.escape(v['RESOLVER_IP'])} .*{re.escape(v['UNBOUND_IMAGE'])}", text)
    assert f"dig +short +time=1 +tries=1 @{v['RESOLVER_IP']} shop.gameday.test A" in text


def test_up_dry_run_descriptor_validates_against_the_lab_schema(sandbox: dict[str, Any]):
    v = versions()
    result = run("bash", str(LAB / "up.sh"), "--dry-run", "descriptor", env=sandbox["env"])
    assert result.returncode == 0, result.stderr
    data = dry_run_descriptor(result.stdout)
    lab = descriptor.from_dict(data)  # the netns lab's schema and checks
    assert lab.lab == "kind"
    assert [r.name for r in lab.regions] == ["region-1", "region-2"]
    for region, n in ((lab.primary, 1), (lab.secondary, 2)):
        assert region.driver == "kubernetes"
        assert region.kube_context == f"kind-region-{n}"
        assert region.namespace == "gameday"
        assert region.node_selector == f"topology.kubernetes.io/region=region-{n}"
        assert region.node_containers == (f"region-{n}-control-plane", f"region-{n}-worker")
        assert region.storefront_url == f"http://{region.address}:8080"
        assert region.db_port == 5432
    assert lab.primary.address != lab.secondary.address
    for region, n in ((lab.primary, 1), (lab.secondary, 2)):  # the pinned LoadBalancer IPs
        assert region.address == v[f"LB_IP_REGION_{n}_STOREFRONT"]
        assert region.db_host == v[f"LB_IP_REGION_{n}_POSTGRES"]
    assert lab.dns.authoritative.address == v["PDNS_IP"]
    assert lab.dns.resolver.address == v["RESOLVER_IP"]
    assert (lab.dns.name, lab.dns.zone, lab.dns.ttl_s, lab.dns.health_interval_s) == (
        "shop.gameday.test",
        "gameday.test",
        1,
        1,
    )
    assert (lab.database.name, lab.database.user, lab.database.password) == (
        "storefront",
        "gameday",
        "********",  # masked in the dry run's output
    )
    # The node containers kind will create are the ones the kind configs declare.
    for region in lab.regions:
        config = yaml.safe_load((LAB / "kind" / f"{region.name}.yaml").read_text())
        roles = [n["role"] for n in config["nodes"]]
        expected = [f"{region.name}-{r}" for r in ("control-plane", "worker")]
        assert len(roles) == len(expected) and roles == ["control-plane", "worker"]
        assert list(region.node_containers) == expected


def test_up_images_refuses_a_docker_engine_older_than_28(tmp_path: Path):
    """`docker save --platform` needs API 1.48 (Docker Engine 28.0): an older engine is
    refused in one line before anything is built. Stand-ins: docker and kind scripts."""
    bin_dir, trace = tmp_path / "bin", tmp_path / "executed"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        f'#!/bin/sh\necho "docker $*" >> "{trace}"\n'
        'case "$*" in *APIVersion*) echo 1.47;; *) echo linux/amd64;; esac\n'
    )
    (bin_dir / "kind").write_text(f'#!/bin/sh\necho "kind $*" >> "{trace}"\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
           "GAMEDAY_KIND_STATE": str(tmp_path / "state")}
    result = run("bash", str(LAB / "up.sh"), "images", env=env)
    assert result.returncode == 1
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("kind-lab:")]
    assert "API 1.47 is older than 1.48" in line and "Docker Engine 28.0" in line
    assert "buildx" not in trace.read_text() and "kind load" not in trace.read_text()


# `--output type=docker,dest=FILE` with buildx's default `docker` driver needs dockerd's
# containerd image store (buildx v0.36.1 driver/docker/driver.go: DockerExporter is
# useContainerdSnapshotter; build/opt.go refuses it otherwise); a docker-container builder
# has its own exporter.
_DOCKER_EXPORTER_TO_FILE = re.compile(r"type=docker\\?,(?:[^ \n]*,)?dest=")


def docker_exporter_misuses(text: str) -> list[str]:
    """The lines of `text` (comments aside) that export `type=docker,dest=` without a
    docker-container builder: one created in the same file (`docker buildx create --driver docker-container
    --name NAME`) and named on that build (`--builder NAME`)."""
    builders = set(re.findall(
        r"buildx create\b[^\n]*--driver[ =]docker-container\b[^\n]*--name[ =](\S+)", text))
    builders |= set(re.findall(
        r"buildx create\b[^\n]*--name[ =](\S+)[^\n]*--driver[ =]docker-container\b", text))
    bad = []
    for line in text.splitlines():
        if _DOCKER_EXPORTER_TO_FILE.search(line) and not line.lstrip().startswith("#"):
            named = re.search(r"--builder[ =](\S+)", line)
            if not (named and named.group(1) in builders):
                bad.append(line.strip())
    return bad


def test_no_docker_exporter_to_a_file_without_a_docker_container_builder():
    sources = [*LAB.rglob("*"), *(ROOT / "scripts").rglob("*"), *(ROOT / ".github").rglob("*"),
               ROOT / "Makefile", ROOT / ".ci" / "run"]
    found = {str(p.relative_to(ROOT)): docker_exporter_misuses(p.read_text())
             for p in sources if p.is_file()}
    assert {k: v for k, v in found.items() if v} == {}
    # the check is real: main's build before issue 20, and the docker-container way
    old = ('run docker buildx build --provenance=false --output "type=docker,dest=$archive" '
           '-f "$KIND_LAB/storefront/Dockerfile"')
    assert docker_exporter_misuses(old) == [old]
    ok = ("docker buildx create --driver docker-container --name kindlab\n"
          "docker buildx build --builder kindlab --output type=docker,dest=x.tar .\n")
    assert docker_exporter_misuses(ok) == []
    assert docker_exporter_misuses(ok.replace("--builder kindlab ", ""))


def test_up_gitops_dry_run(sandbox: dict[str, Any]):
    env = {**sandbox["env"], "GAMEDAY_GITOPS_REPO": "https://example.test/gameday.git"}
    result = run("bash", str(LAB / "up.sh"), "--dry-run", "gitops", env=env)
    assert result.returncode == 0, result.stderr
    text = "\n".join(commands(result.stdout))
    assert f"argo-cd/{versions()['ARGOCD_VERSION']}/manifests/install.yaml" in text
    assert "--from-literal=server=https://region-2-control-plane:6443" in text
    assert "argocd.argoproj.io/secret-type=cluster" in text


def test_up_rejects_unknown_arguments(sandbox: dict[str, Any]):
    result = run("bash", str(LAB / "up.sh"), "--dry-run", "everything", env=sandbox["env"])
    assert result.returncode != 0 and "unknown argument 'everything'" in result.stderr


def test_down_dry_run_prints_every_command_and_changes_nothing(sandbox: dict[str, Any]):
    result = run("bash", str(LAB / "down.sh"), "--dry-run", env=sandbox["env"])
    assert result.returncode == 0, result.stderr
    assert not sandbox["trace"].exists(), sandbox["trace"].read_text()
    cmds = commands(result.stdout)
    for region in ("region-1", "region-2"):
        delete_svc = cmds.index(
            f"kubectl --context kind-{region} -n gameday --request-timeout=20s delete service "
            "storefront postgres-lb --ignore-not-found --wait=true --timeout=60s"
        )
        assert delete_svc < cmds.index(f"kind delete cluster --name {region}")
    # cloud-provider-kind is stopped (its cleanup runs on SIGTERM, not on rm -f), what it left
    # is removed by its cluster label, and only then the network, which fails while any
    # container is still attached
    order = [
        "kind delete cluster --name region-2",
        "docker stop --time 30 gameday-cloud-provider-kind",
        "docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=region-1 "
        "| xargs -r docker rm -f",
        "docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=region-2 "
        "| xargs -r docker rm -f",
        "docker rm -f gameday-pdns gameday-unbound gameday-cloud-provider-kind",
        "docker network rm kind",
    ]
    assert [cmds.index(c) for c in order] == sorted(cmds.index(c) for c in order)
    assert f"rm -f {sandbox['env']['GAMEDAY_LAB']}" in cmds


# -- manifests --------------------------------------------------------------------------------


def render(overlay: str) -> list[dict[str, Any]]:
    result = run(tool("kubectl"), "kustomize", str(LAB / "overlays" / overlay))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def validate(*paths: Path) -> str:
    result = run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, *map(str, paths))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Couldn't find schema" not in output, output
    return output


@pytest.mark.parametrize("region", ["region-1", "region-2"])
def test_overlay_renders_and_validates(region: str, tmp_path: Path):
    docs = render(region)
    rendered = tmp_path / f"{region}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    output = validate(rendered)
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert output.count(" passed for resource ") == len(docs)

    assert ("Namespace", "gameday") in by_kind
    assert all(
        d["metadata"].get("namespace") == "gameday" for d in docs if d["kind"] != "Namespace"
    )
    assert all(d["metadata"]["labels"]["topology.kubernetes.io/region"] == region for d in docs)
    region_cm = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["data"].get("name") == region
    )
    v = versions()
    for kind, name, image in (
        ("Deployment", "storefront", v["STOREFRONT_IMAGE"]),
        ("StatefulSet", "postgres", v["POSTGRES_IMAGE"]),
    ):
        pod = by_kind[(kind, name)]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"topology.kubernetes.io/region": region}
        (container,) = pod["containers"]
        assert container["image"] == image
        refs = [
            e["valueFrom"]["configMapKeyRef"]["name"]
            for e in container["env"]
            if "configMapKeyRef" in e.get("valueFrom", {})
        ]
        assert refs == [region_cm["metadata"]["name"]]  # the generated name, hash and all
    for svc in ("storefront", "postgres-lb"):
        assert by_kind[("Service", svc)]["spec"]["type"] == "LoadBalancer"
    sts = by_kind[("StatefulSet", "postgres")]
    volumes = {vol["name"]: vol for vol in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["role"]["configMap"]["name"] == "gameday-db"  # written by up.sh, not in git
    scripts = next(d for d in docs if d["metadata"]["name"].startswith("postgres-scripts-"))
    assert volumes["scripts"]["configMap"]["name"] == scripts["metadata"]["name"]
    assert scripts["data"]["entrypoint.sh"] == (LAB / "base/postgres/entrypoint.sh").read_text()
    assert "wal_log_hints=on" in scripts["data"]["entrypoint.sh"]


def test_overlays_differ_only_by_region():
    v = versions()
    one, two = (yaml.safe_dump_all(render(r)) for r in ("region-1", "region-2"))
    for region, svc, key in PINNED:  # and by their pinned LoadBalancer IPs
        text = f"loadBalancerIP: {v[key]}"
        placeholder = f"loadBalancerIP: PINNED-{svc}"
        if region == "region-1":
            one = one.replace(text, placeholder)
        else:
            two = two.replace(text, placeholder)
    one = re.sub(r"region-[a-z0-9]{10}\b", "region-HASH", one).replace("region-1", "region-N")
    two = re.sub(r"region-[a-z0-9]{10}\b", "region-HASH", two).replace("region-2", "region-N")
    assert one == two


def test_overlays_pin_the_load_balancer_ips():
    """cloud-provider-kind (v0.10.0) recreates a stopped load-balancer container with a pool
    address unless spec.loadBalancerIP is set; the descriptor, the DNS zone and the standby's
    primary_host would keep the old one."""
    import ipaddress

    v = versions()
    subnet = ipaddress.ip_network(v["KIND_SUBNET"])
    handed_out = ipaddress.ip_network(v["KIND_IP_RANGE"])
    pinned = [v[key] for _, _, key in PINNED]
    assert len(set(pinned)) == len(pinned)
    for region, svc, key in PINNED:
        address = ipaddress.ip_address(v[key])
        assert address in subnet and address not in handed_out, key
        assert v[key] not in (v["PDNS_IP"], v["RESOLVER_IP"], v["KIND_GATEWAY"])
        assert ipaddress.ip_address(v[key]) in ipaddress.ip_network("198.18.0.0/15")
        (service,) = [d for d in render(region) if d["kind"] == "Service" and d["metadata"]["name"] == svc]
        assert service["spec"]["type"] == "LoadBalancer"
        assert service["spec"]["loadBalancerIP"] == v[key], (region, svc)


def test_base_manifests_validate():
    output = validate(*sorted((LAB / "base").glob("[!k]*.yaml")))
    assert "statefulset/postgres" in output and "deployment/storefront" in output


def test_validator_can_fail(tmp_path: Path):
    """The check above is real: a wrong manifest is rejected."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
        "spec: {replicas: two, selector: {}, template: {spec: {containers: []}}}\n"
    )
    result = run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(broken))
    assert result.returncode != 0


def test_kind_configs_have_distinct_ranges_and_region_labels():
    seen: set[str] = set()
    for n in (1, 2):
        config = yaml.safe_load((LAB / "kind" / f"region-{n}.yaml").read_text())
        assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
        net = config["networking"]
        for key in ("podSubnet", "serviceSubnet"):
            assert net[key] not in seen
            seen.add(net[key])
        for node in config["nodes"]:
            assert node["labels"] == {"topology.kubernetes.io/region": f"region-{n}"}


def test_argo_cd_applications_point_at_the_overlays():
    up = (LAB / "up.sh").read_text()
    for n in (1, 2):
        app = yaml.safe_load((LAB / "clusters" / f"region-{n}.yaml").read_text())
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        source = app["spec"]["source"]
        assert (ROOT / source["path"] / "kustomization.yaml").exists()
        assert source["path"] == f"kind-lab/overlays/region-{n}"
        assert source["repoURL"] in up  # the placeholder up.sh --gitops replaces
        assert app["spec"]["syncPolicy"]["automated"]["selfHeal"] is False
        ignored = {d["kind"]: d["jsonPointers"] for d in app["spec"]["ignoreDifferences"]}
        assert ignored == {"Deployment": ["/spec/replicas"], "StatefulSet": ["/spec/replicas"]}
    assert yaml.safe_load((LAB / "clusters/region-1.yaml").read_text())["spec"]["destination"] == {
        "server": "https://kubernetes.default.svc",
        "namespace": "gameday",
    }


# -- images, DNS, versions --------------------------------------------------------------------


def test_every_version_is_pinned():
    v = versions()
    for key in (
        "KIND_NODE_IMAGE",
        "CLOUD_PROVIDER_KIND_IMAGE",
        "POSTGRES_IMAGE",
        "PDNS_IMAGE",
        "UNBOUND_IMAGE",
        "STOREFRONT_IMAGE",
    ):
        assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+[\w.-]*(@sha256:[0-9a-f]{64})?", v[key]), (
            f"{key}={v[key]}"
        )
    for key in ("KIND_VERSION", "KUBECTL_VERSION", "ARGOCD_VERSION"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", v[key]), f"{key}={v[key]}"
    # by digest: the one kind v0.30.0 pins for v1.34.0 (pkg/apis/config/defaults/image.go)
    assert v["KIND_NODE_IMAGE"] == f"kindest/node:v{K8S_VERSION}@sha256:{KIND_NODE_DIGEST}"
    assert v["KIND_VERSION"] == "v0.30.0"  # a new kind pins another digest: look it up again
    assert v["POSTGRES_IMAGE"].startswith("postgres:15.")
    everything = "\n".join(p.read_text() for p in LAB.rglob("*") if p.is_file())
    assert ":latest" not in everything and "@latest" not in everything
    assert (LAB / "storefront/Dockerfile").read_text().count("FROM python:3.11.") == 1


def test_storefront_image_installs_the_package_and_runs_the_module():
    dockerfile = (LAB / "storefront" / "Dockerfile").read_text()
    assert (
        "COPY pyproject.toml README.md ./" in dockerfile and "COPY gameday ./gameday" in dockerfile
    )
    assert "RUN pip install ." in dockerfile
    # the manifests name the way the image really arrives
    for manifest in LAB.rglob("*.yaml"):
        assert "kind load docker-image" not in manifest.read_text(), manifest
    assert "kind load image-archive" in (LAB / "base" / "storefront.yaml").read_text()
    assert 'ENTRYPOINT ["python", "-m", "gameday.labs.storefront"]' in dockerfile
    ignore = (LAB / "storefront" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 : ignore.index("*") + 4] == [
        "!pyproject.toml",
        "!README.md",
        "!gameday/",
    ]


def test_dns_configuration():
    zone = (LAB / "dns" / "gameday.test.zone.in").read_text()
    assert "$TTL 1" in zone
    (lua,) = [line for line in zone.splitlines() if line.startswith("shop")]
    assert re.fullmatch(
        r"shop\s+1 IN LUA A \"ifurlup\('http://shop\.gameday\.test:8080/healthz', "
        r"\{\{'@REGION1_ADDRESS@'\}, \{'@REGION2_ADDRESS@'\}\}, \{stringmatch='ok', timeout=1\}\)\"",
        lua,
    ), lua
    pdns = dict(
        line.split("=", 1)
        for line in (LAB / "dns" / "pdns.conf").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pdns["enable-lua-records"] == "yes"
    assert pdns["lua-health-checks-interval"] == "1"
    assert pdns["security-poll-suffix"] == ""
    assert pdns["bind-config"] == "/etc/gameday-pdns/named.conf"
    assert "/etc/gameday-pdns/gameday.test.zone" in (LAB / "dns" / "named.conf").read_text()
    unbound = (LAB / "dns" / "unbound.conf.in").read_text()
    for line in (
        'local-zone: "test." transparent',
        'local-zone: "." refuse',
        'local-zone: "@KIND_REVERSE_ZONE@" static',
        "stub-addr: @PDNS_IP@",
    ):
        assert line in unbound
    v = versions()
    assert (
        v["KIND_REVERSE_ZONE"]
        == ".".join(reversed(v["KIND_SUBNET"].split(".")[:2])) + ".in-addr.arpa."
    )


def unbound_settings(text: str) -> list[tuple[str, str]]:
    """(key, value) of every `key: value` line of an unbound config, comments dropped."""
    pairs = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if ":" in line and not line.endswith(":"):
            key, value = line.split(":", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


# netns resolver settings that belong to where it runs, not to how it resolves
NETNS_PLACEMENT = {"interface", "directory", "username", "chroot", "pidfile", "access-control",
                   "log-time-ascii", "local-zone", "domain-insecure", "stub-addr", "name",
                   "control-enable"}


def test_kind_resolver_resolves_as_the_netns_one():
    """The netns lab's resolver is the one the game day is tested with: every setting of
    how it resolves is in kind-lab's too, with the same value (the issue found three
    missing: qname-minimisation, harden-referral-path, do-not-query-localhost)."""
    from gameday.labs.netns import configs

    netns = unbound_settings(configs.unbound_conf("/state"))
    kind = dict(unbound_settings((LAB / "dns" / "unbound.conf.in").read_text()))
    missing = {k: v for k, v in netns if k not in NETNS_PLACEMENT and kind.get(k) != v}
    assert missing == {}
    # and the zones ask /healthz the same way
    netns_zone = next(ln for ln in configs.zone(ttl_s=1).splitlines() if ln.startswith("shop"))
    kind_zone = (LAB / "dns" / "gameday.test.zone.in").read_text()
    options = re.search(r"\{stringmatch=[^}]*\}", netns_zone)
    assert options and options.group(0) in kind_zone


@pytest.fixture
def dns_step(tmp_path: Path) -> dict[str, Any]:
    """`up.sh dns` run for real, its files written, with stand-ins for what needs Docker and
    clusters: kubectl prints each Service's pinned LoadBalancer IP, docker records its
    arguments, dig answers region-1's address."""
    v = versions()
    bin_dir, trace = tmp_path / "bin", tmp_path / "docker-calls"
    bin_dir.mkdir()
    ips = {f"kind-{r} {svc}": v[key] for r, svc, key in PINNED}
    cases = "\n".join(
        f'  *"--context {ctx.split()[0]} "*" service {ctx.split()[1]} "*) echo {ip};;'
        for ctx, ip in ips.items()
    )
    (bin_dir / "kubectl").write_text(f'#!/bin/bash\ncase "$* " in\n{cases}\n  *) exit 1;;\nesac\n')
    (bin_dir / "docker").write_text(
        f'#!/bin/bash\nprintf "%s\\0" "$@" >> "{trace}"\nprintf "\\n" >> "{trace}"\n')
    (bin_dir / "dig").write_text(f"#!/bin/sh\necho {v['LB_IP_REGION_1_STOREFRONT']}\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    state = tmp_path / "state"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
           "GAMEDAY_KIND_STATE": str(state), "GAMEDAY_LAB": str(tmp_path / "lab.json")}
    result = run("bash", str(LAB / "up.sh"), "dns", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [line.split("\0")[:-1] for line in trace.read_text().splitlines()]

    def mounts(name: str) -> dict[str, str]:
        """container path -> host path of `docker run --name NAME`'s -v options"""
        (args,) = [c for c in calls if c[:2] == ["run", "-d"] and c[c.index("--name") + 1] == name]
        found = {}
        for i, arg in enumerate(args):
            if arg == "-v":
                host, container = args[i + 1].split(":")[:2]
                found[container] = host
        return found

    return {"state": state, "mounts": mounts, "tmp": tmp_path}


def test_rendered_kind_resolver_config_passes_unbound_checkconf(dns_step: dict[str, Any]):
    (host,) = [h for c, h in dns_step["mounts"]("gameday-unbound").items()
               if c == "/opt/unbound/etc/unbound/unbound.conf"]
    result = run(tool("unbound-checkconf"), host)
    assert result.returncode == 0 and "no errors" in result.stdout, result.stdout + result.stderr
    rendered = Path(host).read_text()
    assert "@" not in rendered.replace("@PDNS_IP@", "")  # every placeholder filled in
    assert f"stub-addr: {versions()['PDNS_IP']}" in rendered
    broken = dns_step["tmp"] / "broken.conf"  # the check is real
    broken.write_text(rendered.replace("stub-addr: ", "stub-addr: not-an-address-"))
    assert run(tool("unbound-checkconf"), str(broken)).returncode != 0


def test_rendered_kind_zone_passes_pdnsutil_check_zone(dns_step: dict[str, Any]):
    """pdnsutil reads the config directory the container mounts; its container paths are
    mapped back to where up.sh wrote them, as the mount does."""
    mounts = dns_step["mounts"]("gameday-pdns")
    (container_dir,) = mounts
    config = dns_step["tmp"] / "pdns-config"
    config.mkdir()
    for f in Path(mounts[container_dir]).iterdir():
        (config / f.name).write_text(f.read_text().replace(container_dir, str(config)))
    result = run(tool("pdnsutil"), f"--config-dir={config}", "check-zone", "gameday.test")
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "0 errors" in output, output
    zone = (config / "gameday.test.zone").read_text()
    v = versions()
    assert v["LB_IP_REGION_1_STOREFRONT"] in zone and v["LB_IP_REGION_2_STOREFRONT"] in zone
    # the check is real: an address left unrendered is refused
    (config / "gameday.test.zone").write_text(zone.replace(v["PDNS_IP"], "@PDNS_IP@"))
    assert run(tool("pdnsutil"), f"--config-dir={config}", "check-zone",
               "gameday.test").returncode != 0


# -- the workflow -----------------------------------------------------------------------------


def test_workflow_validates_against_github_schema():
    result = run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_runs_the_game_day_on_both_labs():
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf[True]  # YAML 1.1 reads the key `on` as True
    (cron,) = [s["cron"] for s in triggers["schedule"]]
    minute = cron.split()[0]
    assert minute.isdigit() and int(minute) != 0, cron
    assert "workflow_dispatch" in triggers
    jobs = wf["jobs"]
    assert set(jobs) == {"netns", "kind"}
    # side by side: the netns results do not depend on the kind job
    assert "needs" not in jobs["netns"] and "needs" not in jobs["kind"]
    assert "env" not in wf  # each job scopes its own environment
    for name, job in jobs.items():
        reports = job["env"]["GAMEDAY_REPORTS"]
        assert reports == f"reports/{name}"  # each lab its own runs and trend
        uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
        (upload,) = uploads
        assert upload["if"] == "${{ always() }}" and upload["with"]["path"] == f"{reports}/"
        # unique per job and per attempt: a re-run does not collide with the first attempt
        assert upload["with"]["name"] == (
            f"game-day-{name}-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}"
        )


def test_workflow_netns_job_runs_the_script_a_test_runs_here():
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["netns"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    (only,) = runs  # everything the job does is in the script
    assert only.split() == [
        "sudo",
        "--preserve-env=GITHUB_STEP_SUMMARY,GAMEDAY_REPORTS",
        "scripts/ci-game-day.sh",
    ]
    assert (ROOT / "tests/integration/test_ci_game_day.py").read_text().count("ci-game-day.sh")
    script = (ROOT / "scripts/ci-game-day.sh").read_text()
    # it calls the Makefile's targets rather than repeating them
    assert "make --no-print-directory game-day" in script and "lab-down" in script
    assert "trap teardown EXIT" in script and "--fail-on-regression" in script
    assert os.access(ROOT / "scripts/ci-game-day.sh", os.X_OK)


def test_workflow_kind_job():
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["kind"]["steps"]
    runs = [s.get("run", "") for s in steps]
    script = "\n".join(runs)

    def index(fragment: str) -> int:
        return next(i for i, r in enumerate(runs) if fragment in r)

    assert "fs.inotify.max_user_watches" in script
    order = [
        index("fs.inotify"),
        index("kind-lab/up.sh network clusters"),
        next(i for i, r in enumerate(runs) if r.strip() == "kind-lab/up.sh"),
        index("experiments/game-day.json"),
        index("experiments/failback.json"),
        index("GITHUB_STEP_SUMMARY"),
        index("gameday report reports/kind/latest --fail-on-regression"),
        index("kind-lab/down.sh"),
    ]
    assert order == sorted(order)
    # each chaos run keeps its own journal, in the uploaded directory
    assert "--journal-path reports/kind/journal-game-day.json" in runs[index("game-day.json")]
    assert "--journal-path reports/kind/journal-failback.json" in runs[index("failback.json")]
    assert steps[index("kind-lab/down.sh")]["if"] == "${{ always() }}"
    # the trend's history is restored before the bring-up, so a run that fails there saves
    # what it restored, not a directory without history.jsonl
    restore = next(i for i, st in enumerate(steps)
                   if st.get("uses", "").startswith("actions/cache/restore@"))
    assert restore < index("kind-lab/up.sh network clusters")
    save = next(st for st in steps if st.get("uses", "").startswith("actions/cache/save@"))
    assert "hashFiles('reports/kind/history.jsonl') != ''" in save["if"]
    # what needs the lab runs only when the bring-up succeeded
    bring_up = steps[next(i for i, r in enumerate(runs) if r.strip() == "kind-lab/up.sh")]
    assert bring_up["id"] == "lab"
    gated = "steps.lab.outcome == 'success'"
    for fragment in ("experiments/game-day.json", "experiments/failback.json",
                     "gameday report reports/kind/latest --fail-on-regression"):
        condition = steps[index(fragment)].get("if", "")
        assert gated in condition, (fragment, condition)
        assert "always()" not in condition, (fragment, condition)
    assert "!cancelled()" in steps[index("experiments/failback.json")]["if"]
    # versions.env reaches the job only under a prefix (no bare NAMESPACE, DB_USER, ...)
    exported = runs[index("versions.env")]
    assert "KINDLAB_" in exported and ">> \"$GITHUB_ENV\"" in exported
    for r in runs:
        assert not re.search(r"\$\{?(KIND_VERSION|KUBECTL_VERSION|NAMESPACE|DB_USER)\b", r), r
    result = run("bash", "-c", exported.replace('"$GITHUB_ENV"', "/dev/stdout"))
    names = [line.split("=", 1)[0] for line in result.stdout.splitlines()]
    assert names and all(n.startswith("KINDLAB_") for n in names)
    assert {"KINDLAB_KIND_VERSION", "KINDLAB_KUBECTL_VERSION"} <= set(names)


def test_entrypoint_logs_the_lines_the_driver_reads():
    """The kubernetes driver reads the postgres pod's log: the resync method, and that a
    fenced pod on an empty volume started nothing (then its revert does not wait for it)."""
    from gameday.labs.kubernetes.readiness import FENCED_EMPTY_LINE

    entrypoint = (LAB / "base/postgres/entrypoint.sh").read_text()
    assert 'log() { echo "gameday-postgres: $*" >&2; }' in entrypoint
    prefix = "gameday-postgres: "
    assert f'log "{FENCED_EMPTY_LINE.removeprefix(prefix)}' in entrypoint
    assert 'log "resync=$resync"' in entrypoint


# -- the workflow's budget and pins (issue 20) ------------------------------------------------

# Each action at the release pinned, by the commit its tag points to in the action's own
# repository (read with git rev-parse TAG^{commit} in a snapshot of it; each runs on node24).
PINNED_ACTIONS = {
    "actions/checkout": ("v7.0.1", "3d3c42e5aac5ba805825da76410c181273ba90b1"),
    "actions/setup-python": ("v7.0.0", "5fda3b95a4ea91299a34e894583c3862153e4b97"),
    "actions/cache": ("v5.0.5", "27d5ce7f107fe9357f9df03efb73ab90386fccae"),
    "actions/upload-artifact": ("v7.0.0", "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f"),
    "mikepenz/action-junit-report": ("v6.4.2", "d9f48fc87bc235f7e214acf696ca5abc0a986f16"),
}


def workflow_jobs() -> dict[str, Any]:
    jobs: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    return jobs


def test_workflow_every_step_has_a_timeout_and_each_job_budget_adds_up():
    """A step without timeout-minutes can use the whole job's limit; then the job is
    cancelled and the steps that report and tear down never run. So: every step has one, and
    a job's limit covers the sum of its steps'."""
    for name, job in workflow_jobs().items():
        limits = []
        for step in job["steps"]:
            label = step.get("name") or step.get("uses")
            limit = step.get("timeout-minutes")
            assert isinstance(limit, int) and limit > 0, f"{name}: step {label!r} has no timeout"
            limits.append(limit)
        assert sum(limits) <= job["timeout-minutes"], (name, sum(limits), job["timeout-minutes"])


def test_workflow_actions_are_pinned_by_commit_with_the_tag_beside_it():
    text = WORKFLOW.read_text()
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", text, re.M)
    assert len(uses) >= 9
    for ref, rest in uses:
        action, _, pin = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", pin), f"{ref}: pinned by tag, not by commit"
        repo = "/".join(action.split("/")[:2])
        tag, sha = PINNED_ACTIONS[repo]
        assert pin == sha, f"{ref}: {repo} {tag} is {sha}"
        assert rest.strip() == f"# {tag}", f"{ref}: the tag goes beside it as '# {tag}'"


def test_pin_check_can_fail():
    assert not re.fullmatch(r"[0-9a-f]{40}", "v4")
    assert re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", "      - uses: actions/checkout@v4\n",
                      re.M) == [("actions/checkout@v4", "")]


# up.sh's bounded waits, as its dry run prints them
_BOUNDS = re.compile(r"at most (\d+)s|--timeout=(\d+)s|--wait (\d+)s")
# what up.sh does not bound itself, per workflow step: pulling the node and cloud-provider-kind
# images; building, saving and loading the storefront image (estimates, not measured here)
UNBOUNDED_ALLOWANCE_S = {"clusters": 300, "lab": 300}


def test_up_sh_waits_fit_the_workflow_steps_that_run_them(sandbox: dict[str, Any]):
    """The issue: up.sh's bounded waits added up to more than 40 minutes against a 60-minute
    job. Each workflow step that runs up.sh has a limit its waits fit in, so a stuck wait
    ends with up.sh's own one-line error, not with the step's timeout."""
    steps = {s.get("id"): s for s in workflow_jobs()["kind"]["steps"]}
    for step_id, args in (("clusters", ["network", "clusters"]), ("lab", [])):
        step = steps[step_id]
        assert step["run"].split() == ["kind-lab/up.sh", *args]
        if not args:  # the bring-up runs every step; the first two are done by then
            args = ["images", "database", "storefront", "dns", "descriptor"]
        result = run("bash", str(LAB / "up.sh"), "--dry-run", *args, env=sandbox["env"])
        assert result.returncode == 0, result.stderr
        waits = sum(int(next(g for g in m.groups() if g))
                    for m in _BOUNDS.finditer(result.stdout))
        assert waits > 0
        budget = step["timeout-minutes"] * 60
        assert waits + UNBOUNDED_ALLOWANCE_S[step_id] <= budget, (step_id, waits, budget)
