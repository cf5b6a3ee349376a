# gameday: `make game-day` runs a whole drill on the embedded netns lab; `make test` runs
# every test. Both install what is missing first (as root on Debian/Ubuntu).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CHAOS := $(BIN)/chaos --no-version-check
REPORTS ?= reports

.PHONY: setup system venv lab-up lab-down lab-status game-day failover test test-unit lint bench clean

setup: system venv

system:
	@bash scripts/setup-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

lab-up: setup
	@if [ -f .gameday/lab.json ]; then echo "lab already up (.gameday/lab.json)"; else $(BIN)/gameday lab up; fi

lab-down: venv
	$(BIN)/gameday lab down

lab-status: venv
	$(BIN)/gameday lab status

# The failover drill alone.
failover: lab-up
	$(CHAOS) run --journal-path $(REPORTS)/journal-game-day.json experiments/game-day.json; rc=$$?; \
	echo "report: $(REPORTS)/latest/report.md"; exit $$rc

game-day: failover

test: setup
	$(BIN)/pytest

test-unit: venv
	$(BIN)/pytest -m "not integration"

lint: venv
	$(BIN)/ruff check gameday tests bench

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean: lab-down
	rm -rf $(VENV) *.egg-info
