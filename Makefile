# gameday: `make game-day` runs a whole drill on the embedded netns lab; `make test` runs
# every test. Both install what is missing first (as root on Debian/Ubuntu).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CHAOS := $(BIN)/chaos --no-version-check
REPORTS ?= reports

.PHONY: setup system venv lab-up lab-down lab-status game-day failover failback test test-unit lint bench clean

setup: system venv

system:
	@bash scripts/setup-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,test]'
	touch $@

# The descriptor `gameday lab up` writes: $GAMEDAY_HOME/lab.json (default .gameday/lab.json).
LAB_FILE = $(or $(GAMEDAY_HOME),.gameday)/lab.json

lab-up: setup
	@if [ -f "$(LAB_FILE)" ]; then echo "lab already up ($(LAB_FILE))"; else $(BIN)/gameday lab up; fi

lab-down: venv
	$(BIN)/gameday lab down

lab-status: venv
	$(BIN)/gameday lab status

# The whole drill: failover, then failback (even when the failover missed a target, so the
# lab ends where it started); one report covers both.
game-day: lab-up
	@mkdir -p $(REPORTS)
	$(CHAOS) run --journal-path $(REPORTS)/journal-game-day.json experiments/game-day.json; rc=$$?; \
	$(CHAOS) run --journal-path $(REPORTS)/journal-failback.json experiments/failback.json; rc2=$$?; \
	echo "report: $(REPORTS)/latest/report.md"; [ $$rc -eq 0 ] && [ $$rc2 -eq 0 ]

# The failover drill alone, and the failback alone (after a failover).
failover: lab-up
	@mkdir -p $(REPORTS)
	$(CHAOS) run --journal-path $(REPORTS)/journal-game-day.json experiments/game-day.json; rc=$$?; \
	echo "report: $(REPORTS)/latest/report.md"; exit $$rc

failback: venv
	@mkdir -p $(REPORTS)
	$(CHAOS) run --journal-path $(REPORTS)/journal-failback.json experiments/failback.json; rc=$$?; \
	echo "report: $(REPORTS)/latest/report.md"; exit $$rc

# lint first: mypy --strict and ruff are part of the test, so CI (which runs this target)
# keeps them clean
test: setup lint
	$(BIN)/python bench/bench_metrics.py --check
	$(BIN)/pytest

test-unit: venv
	$(BIN)/pytest -m "not integration"

lint: venv
	$(BIN)/ruff check gameday tests bench
	$(BIN)/mypy

# The benchmarks with a target. Each prints its ratios to a floor measured in the same run
# (with the absolute times beside them) and exits non-zero on a missed ratio or memory
# target, or when it got no data; every one runs even when another missed, and the target
# fails at the end, naming those that missed. Each takes /run/gameday-lab.lock while its
# lab is up (do not wrap it in flock). bench_http_client.py (a tool to compare two versions
# of the HTTP client, with no target) and soak.py (many drills: long) run on their own.
BENCHMARKS = "bench_canary.py" "bench_recorder.py" "bench_metrics.py --hours 1" \
	"bench_metrics.py --hours 8"

bench: setup
	@failed=""; \
	for b in $(BENCHMARKS); do echo "== bench/$$b"; $(BIN)/python bench/$$b || failed="$$failed $$b;"; done; \
	if [ -n "$$failed" ]; then echo "missed a target:$$failed"; exit 1; fi

clean: lab-down
	rm -rf $(VENV) *.egg-info
