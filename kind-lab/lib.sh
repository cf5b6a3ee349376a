# shellcheck shell=bash source-path=SCRIPTDIR
# Shared by up.sh and down.sh: pinned versions, and the command runner behind --dry-run.
# Every command that touches Docker, kind or a cluster goes through run/capture/wait_until,
# which print it ("+ cmd") and, with --dry-run, do nothing else.

KIND_LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$KIND_LAB/.." && pwd)
# shellcheck source=versions.env
source "$KIND_LAB/versions.env"

# shellcheck disable=SC2034  # used by up.sh and down.sh
{
DRY_RUN=${DRY_RUN:-0}
PYTHON=${PYTHON:-python3}
STATE_DIR=${GAMEDAY_KIND_STATE:-$REPO_ROOT/.gameday/kind-lab}
LAB_FILE=${GAMEDAY_LAB:-$REPO_ROOT/.gameday/lab.json}
REGIONS=(region-1 region-2)
}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'kind-lab: %s\n' "$*" >&2; exit 1; }

show() { printf '+'; printf ' %q' "$@"; printf '\n'; }

# run CMD...: print it, then run it unless --dry-run.
run() {
    show "$@"
    [[ $DRY_RUN == 1 ]] || "$@"
}

# run_in FILE CMD...: the same with FILE on standard input.
run_in() {
    local file=$1
    shift
    printf '%s < %q\n' "$(show "$@")" "$file"
    [[ $DRY_RUN == 1 ]] || "$@" < "$file"
}

# apply_generated CONTEXT KUBECTL-CREATE-ARGS...: create-or-update an object kubectl generates.
apply_generated() {
    local context=$1
    shift
    printf '%s --dry-run=client -o yaml | kubectl --context %q apply -f -\n' \
        "$(show kubectl --context "$context" "$@")" "$context"
    [[ $DRY_RUN == 1 ]] ||
        kubectl --context "$context" "$@" --dry-run=client -o yaml |
        kubectl --context "$context" apply -f -
}

# capture VAR EXAMPLE CMD...: VAR=$(CMD); with --dry-run VAR=EXAMPLE.
# shellcheck disable=SC2034  # `out` is a nameref: assigning it sets the caller's VAR
capture() {
    local -n out=$1
    local example=$2
    shift 2
    show "$@"
    if [[ $DRY_RUN == 1 ]]; then out=$example; else out=$("$@"); fi
}

# wait_until SECONDS CMD...: retry CMD every second until it succeeds.
wait_until() {
    local timeout=$1 start=$SECONDS
    shift
    printf '%s  # until it succeeds, at most %ss\n' "$(show "$@")" "$timeout"
    [[ $DRY_RUN == 1 ]] && return 0
    until "$@" >/dev/null 2>&1; do
        ((SECONDS - start < timeout)) || die "timed out after ${timeout}s: $*"
        sleep 1
    done
}

# exists CMD...: true when CMD succeeds; always false with --dry-run (the create is shown).
exists() {
    [[ $DRY_RUN == 1 ]] && return 1
    "$@" >/dev/null 2>&1
}

need() {
    local tool
    [[ $DRY_RUN == 1 ]] && return 0
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: kind-lab needs it (see docs/kind-lab.md)"
    done
}

context_of() { printf 'kind-%s' "$1"; }

# version_at_least VERSION MINIMUM: true when VERSION (dotted numbers) >= MINIMUM.
version_at_least() { [[ $(printf '%s\n' "$2" "$1" | sort -V | head -n 1) == "$2" ]]; }
