# gameday: `make game-day` runs a whole drill on the embedded netns lab; `make test` runs
# every test. Both install what is missing first (as root on Debian/Ubuntu).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CHAOS := $(BIN)/chaos --no-version-check
REPORTS ?= reports

.PHONY: setup system venv lab-up lab-down lab-status game-day failover failback test test-lab test-host test-unit test-fast lint experiments bench bench-check mutate clean

setup: system venv

system:
	@bash scripts/setup-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	@# the distribution was called `gameday` before it became chaostoolkit-gameday
	$(BIN)/pip uninstall --quiet --yes gameday 2>/dev/null || true
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,test]'
	@# the editable package's byte code, once: where PYTHONDONTWRITEBYTECODE is set (CI
	@# images) every chaos and gameday process of the test suite compiled it again (0.1 s)
	$(BIN)/python -m compileall -q gameday
	touch $@

# the Jenkins JUnit schema the unit suite's JUnit tests validate against, from pytest's
# sdist: only test-fast needs it, so `make test` fetches it beside the lab's suite
JUNIT_XSD = $(VENV)/share/gameday/junit-10.xsd

$(JUNIT_XSD): $(VENV)/.installed
	bash scripts/fetch-junit-xsd.sh $(VENV)

# The descriptor `gameday lab up` writes: $GAMEDAY_HOME/lab.json (default .gameday/lab.json).
LAB_FILE = $(or $(GAMEDAY_HOME),.gameday)/lab.json

lab-up: setup
	@if [ -f "$(LAB_FILE)" ]; then echo "lab already up ($(LAB_FILE))"; else $(BIN)/gameday lab up; fi

lab-down: venv
	$(BIN)/gameday lab down

lab-status: venv
	$(BIN)/gameday lab status

# The application canary beside the database canary, through the lab's storefronts
# (docs/app-canary.md); `make game-day APP_CANARY=` runs the database canary alone.
APP_CANARY ?= --var-file experiments/vars/app-canary.yaml

# The whole drill: failover, then failback (even when the failover missed a target, so the
# lab ends where it started); one report covers both.
game-day: lab-up
	@mkdir -p $(REPORTS)
	$(CHAOS) run $(APP_CANARY) --journal-path $(REPORTS)/journal-game-day.json experiments/game-day.json; rc=$$?; \
	$(CHAOS) run $(APP_CANARY) --journal-path $(REPORTS)/journal-failback.json experiments/failback.json; rc2=$$?; \
	echo "report: $(REPORTS)/latest/report.md"; [ $$rc -eq 0 ] && [ $$rc2 -eq 0 ]

# The failover drill alone, and the failback alone (after a failover).
failover: lab-up
	@mkdir -p $(REPORTS)
	$(CHAOS) run $(APP_CANARY) --journal-path $(REPORTS)/journal-game-day.json experiments/game-day.json; rc=$$?; \
	echo "report: $(REPORTS)/latest/report.md"; exit $$rc

failback: venv
	@mkdir -p $(REPORTS)
	$(CHAOS) run $(APP_CANARY) --journal-path $(REPORTS)/journal-failback.json experiments/failback.json; rc=$$?; \
	echo "report: $(REPORTS)/latest/report.md"; exit $$rc

# lint, the unit suite, the lab's suite, the host's tests and the report's cost check at
# once: mypy --strict and ruff are part of the test, so CI (which runs this target) keeps
# them clean, and the lab's drills leave the CPU idle most of their time (a quarter of their
# wall time is CPU), so they take about as long together as the lab's suite alone. Each
# one's output is printed whole as it ends (`make test-lab` to watch the lab's suite as it
# goes). Those beside the lab's suite run at nice 10: its drills' timing keeps the CPU
# first.
test: setup
	$(MAKE) --no-print-directory -j4 --output-sync=target lint test-fast test-lab test-host \
		bench-check BESIDE_LAB="nice -n 10"

# every test on the real netns lab (root): tests/integration/, but for those that need root
# and no lab (test-host)
test-lab: venv
	$(BIN)/pytest -m "integration and not no_lab" --durations=40

# the tests that need root and real servers but no netns lab (kind-lab's PostgreSQL
# entrypoint on this machine's PostgreSQL): no lab lock, so `make test` runs them beside
# the lab's suite instead of in its queue
test-host: venv
	$(BESIDE_LAB) $(BIN)/pytest -m "integration and no_lab"

# everything that needs no lab and no root (the unit suite): under a minute, in two workers
# (one per core here). It measures the unit suite's line coverage of gameday/, prints it
# per module, and fails when a module is under 60% (tests/coverage_floor.py lists the few
# that need the real lab, and why).
test-fast: venv $(JUNIT_XSD)
	$(BESIDE_LAB) $(BIN)/pytest -m "not integration" -n 2 --cov --cov-report=term
	$(BIN)/python tests/coverage_floor.py

test-unit: test-fast

# The shipped experiments are written by gameday/experiments/compose.py (one game day, and
# what each other drill changes): edit that, then run this; a unit test fails until you do.
experiments: venv
	$(BIN)/python -m gameday.experiments.compose

lint: venv
	$(BESIDE_LAB) $(BIN)/ruff check gameday tests bench
	$(BESIDE_LAB) $(BIN)/mypy

# Mutation testing of the core rules (README, Mutation testing): mutmut changes them one
# plausible slip at a time in a copy of the tree (mutants/) and runs the unit tests that
# reach each change; tests/mutation_score.py then prints the score per module and every
# mutant no test killed, with why it may stay, and fails below 90%. From scratch each time
# (mutmut does not re-run a survivor when tests change). 20 to 30 minutes on 2 cores, so
# not part of `make test`.
mutate: venv
	rm -rf mutants
	set -f; $(BIN)/mutmut run $$($(BIN)/python tests/mutation_score.py --patterns) > mutmut.log 2>&1 \
		|| { tail -c 3000 mutmut.log; exit 1; }
	$(BIN)/python tests/mutation_score.py

# The benchmarks with a target. Each prints its ratios to a floor measured in the same run
# (with the absolute times beside them) and exits non-zero on a missed ratio or memory
# target, or when it got no data; every one runs even when another missed, and the target
# fails at the end, naming those that missed. Each takes /run/gameday-lab.lock while its
# lab is up (do not wrap it in flock). bench_http_client.py (a tool to compare two versions
# of the HTTP client, with no target) and soak.py (many drills: long) run on their own.
BENCHMARKS = "bench_canary.py" "bench_app_canary.py" "bench_recorder.py" \
	"bench_metrics.py --hours 1" "bench_metrics.py --hours 8"

# the report's cost against its committed baseline (bench_metrics.py --check): 1 h of
# synthetic run, one report, judged as a ratio to a floor timed in the same process, so
# the other tests running beside it slow both alike
bench-check: venv
	$(BESIDE_LAB) $(BIN)/python bench/bench_metrics.py --check

bench: setup
	@failed=""; \
	for b in $(BENCHMARKS); do echo "== bench/$$b"; $(BIN)/python bench/$$b || failed="$$failed $$b;"; done; \
	if [ -n "$$failed" ]; then echo "missed a target:$$failed"; exit 1; fi

clean: lab-down
	rm -rf $(VENV) *.egg-info mutants mutmut.log
