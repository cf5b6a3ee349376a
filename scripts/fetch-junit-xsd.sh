#!/usr/bin/env bash
# The Jenkins xUnit plugin's JUnit schema (junit-10.xsd), which CI test views validate
# reports against, taken from the sdist of the pytest release the venv runs: pytest's own
# junitxml tests use it (testing/example_scripts/junit-10.xsd), so a pinned, published
# package carries it and nothing of it is copied into this repository.
# Usage: fetch-junit-xsd.sh VENV   (writes VENV/share/gameday/junit-10.xsd)
set -euo pipefail
venv=$1
out="$venv/share/gameday/junit-10.xsd"
[ -s "$out" ] && exit 0
version=$("$venv/bin/python" -c 'import pytest; print(pytest.__version__)')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest "$tmp" "pytest==$version"
member=$(tar -tzf "$tmp"/pytest-*.tar.gz | grep '/testing/example_scripts/junit-10.xsd$')
mkdir -p "$(dirname "$out")"
tar -xzOf "$tmp"/pytest-*.tar.gz "$member" > "$out.tmp"
mv "$out.tmp" "$out"
