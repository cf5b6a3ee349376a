#!/usr/bin/env bash
# The scheduled game day on the embedded netns lab: exactly what the workflow's `netns` job
# runs (.github/workflows/game-day.yml), and what tests/integration/test_ci_game_day.py runs
# here. Root (the netns lab); no Docker.
#
#   sudo scripts/ci-game-day.sh            # on this machine: flock /run/gameday-lab.lock ...
#
# 1. `make game-day`: installs what is missing, brings the lab up, runs the failover game day
#    and the failback (each run appends its verdict to $GITHUB_STEP_SUMMARY when set).
# 2. `gameday report RUN --fail-on-regression` for each run this invocation made: the
#    verdict, and the trend against the earlier runs of the same drill, experiment and lab
#    profile in $GAMEDAY_REPORTS (history.jsonl), so the failover is compared with
#    failovers and the failback with failbacks. JUnit XML in $GAMEDAY_REPORTS/junit/, which
#    the workflow publishes to the CI test view: each drill once (the game day's file
#    carries its failback's suite; a failback run gets a file of its own only when no game
#    day of this invocation carries it). The directory is emptied first: the workflow
#    restores $GAMEDAY_REPORTS from its cache, old files included.
# 3. On any exit: `make lab-down`, so the machine is left as it was found.
#
# Environment: GAMEDAY_HOME (lab state, default .gameday), GAMEDAY_REPORTS (run directories and
# the history, default reports), GITHUB_STEP_SUMMARY (optional). GAMEDAY_LAB is set to the
# descriptor the lab writes, $GAMEDAY_HOME/lab.json.
# Exit status: 0 only when both drills met their targets and no regression was flagged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export GAMEDAY_HOME=${GAMEDAY_HOME:-.gameday}
export GAMEDAY_REPORTS=${GAMEDAY_REPORTS:-reports}
export GAMEDAY_LAB=$GAMEDAY_HOME/lab.json
SUMMARY=${GITHUB_STEP_SUMMARY:-/dev/null}

say() { printf 'ci-game-day: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    say "the netns lab needs root: run it with sudo"
    exit 2
fi
if [[ -f $GAMEDAY_LAB ]]; then
    # not ours to take down: leave it, and do not run a drill on a lab in an unknown state
    say "a lab is already up ($GAMEDAY_LAB): run \`make lab-down\` first"
    exit 2
fi

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    # a drill stopped with this script (a cancelled job signals the whole process group:
    # make dies at once, chaos rolls back) may still hold the lab: wait for it to let go,
    # bounded, or `lab down` is refused while the rollback runs (seen: a rollback that
    # resynced the standby took 13 s)
    if [[ -f $GAMEDAY_HOME/drill.lock ]]; then
        flock --shared --wait 180 "$GAMEDAY_HOME/drill.lock" true ||
            say "a drill still held the lab after 180 s"
    fi
    say "taking the lab down"
    make --no-print-directory lab-down >&2 || { say "lab-down failed"; rc=1; }
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
mkdir -p "$GAMEDAY_REPORTS"
run_dirs() { find "$GAMEDAY_REPORTS" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | LC_ALL=C sort; }
before=$(run_dirs)

drills=0
make --no-print-directory game-day REPORTS="$GAMEDAY_REPORTS" || drills=$?

# The PostgreSQL the lab found (the newest major installed), for the record.
bindir=$(.venv/bin/python -c 'from gameday.labs.netns.lab import pg_bindir; print(pg_bindir())') ||
    bindir=""
version=$("$bindir/postgres" --version 2>/dev/null || echo "PostgreSQL not found")
say "PostgreSQL: $version"

runs=()
while IFS= read -r run; do
    [[ -n $run && -f $GAMEDAY_REPORTS/$run/timeline.sqlite ]] && runs+=("$run")
done < <(LC_ALL=C comm -13 <(printf '%s\n' "$before") <(run_dirs))

# The failback runs whose block a game day of this invocation carries (its summary.json).
attached=$(.venv/bin/python - "$GAMEDAY_REPORTS" "${runs[@]}" <<'EOF' || true
import json, pathlib, sys
for run in sys.argv[2:]:
    try:
        block = json.loads(pathlib.Path(sys.argv[1], run, "summary.json").read_text())["failback"]
    except (OSError, ValueError, KeyError):
        continue
    if block and block.get("run_id") not in (None, run):  # a failback run's own block
        print(block["run_id"])
EOF
)

verdicts=0
rm -rf "$GAMEDAY_REPORTS/junit"
mkdir -p "$GAMEDAY_REPORTS/junit"
for run in "${runs[@]}"; do
    junit=(--junit "$GAMEDAY_REPORTS/junit/$run.xml")
    if grep -qxF -- "$run" <<< "$attached"; then
        junit=()  # its suite is in its game day's file
    fi
    .venv/bin/gameday report "$GAMEDAY_REPORTS/$run" --fail-on-regression "${junit[@]}" ||
        verdicts=1
done

{
    printf '## netns game day\n\n'
    printf -- '- lab: netns, %s\n' "$version"
    if ((${#runs[@]} == 0)); then
        printf -- '- no run was written: see the job log\n'
    else
        printf -- '- runs: %s\n' "${runs[*]}"
    fi
    printf -- '- make game-day: exit %s; reports with --fail-on-regression: %s\n' \
        "$drills" "$([[ $verdicts == 0 ]] && echo pass || echo fail)"
    printf -- '- took %s s\n\n' "$((SECONDS - started))"
} >> "$SUMMARY"

say "runs: ${runs[*]:-none}; make game-day exit $drills; verdicts $([[ $verdicts == 0 ]] && echo pass || echo fail)"
((${#runs[@]} == 2 && drills == 0 && verdicts == 0))
