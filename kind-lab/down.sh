#!/usr/bin/env bash
# Tear kind-lab down: the LoadBalancer Services first (so that cloud-provider-kind removes its
# own containers while it still runs), both clusters, cloud-provider-kind (stopped, so that it
# cleans up) and whatever load-balancer containers it left, the DNS containers, the Docker
# network, kind-lab's state and the descriptor it wrote.
#
#   kind-lab/down.sh [--dry-run] [--keep-network]
#
# Safe to run twice, and on a half-built lab.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

# the label cloud-provider-kind (v0.10.0) puts on every container it creates, valued with the
# kind cluster's name
CPK_CLUSTER_LABEL=io.x-k8s.cloud-provider-kind.cluster

# remove_labelled LABEL=VALUE: docker rm -f every container, running or not, with that label.
remove_labelled() {
    local ids=()
    printf '+ docker ps -aq --filter label=%q | xargs -r docker rm -f\n' "$1"
    [[ $DRY_RUN == 1 ]] && return 0
    mapfile -t ids < <(docker ps -aq --filter "label=$1" 2>/dev/null)
    ((${#ids[@]} == 0)) || docker rm -f "${ids[@]}" >/dev/null || true
}

cluster_exists() { [[ $DRY_RUN == 1 ]] || kind get clusters 2>/dev/null | grep -qx "$1"; }

main() {
    local keep_network=0 arg region
    for arg in "$@"; do
        case $arg in
            --dry-run) DRY_RUN=1 ;;
            --keep-network) keep_network=1 ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument '$arg'" ;;
        esac
    done
    [[ $DRY_RUN == 1 ]] && log "dry run: nothing is changed"
    need docker kind kubectl

    for region in "${REGIONS[@]}"; do
        if cluster_exists "$region"; then
            log "cluster $region"
            # --request-timeout: a paused API server accepts the connection and never answers
            run kubectl --context "$(context_of "$region")" -n "$NAMESPACE" --request-timeout=20s \
                delete service storefront postgres-lb --ignore-not-found --wait=true --timeout=60s || true
            run kind delete cluster --name "$region"
        fi
    done

    log "containers on the kind network"
    # cloud-provider-kind removes its load-balancer containers (kindccm-*) when it is stopped,
    # not when it is killed; whatever it leaves is removed by its cluster label, since a
    # container still attached makes `docker network rm` fail.
    run docker stop --time 30 gameday-cloud-provider-kind || true
    for region in "${REGIONS[@]}"; do
        remove_labelled "$CPK_CLUSTER_LABEL=$region"
    done
    run docker rm -f gameday-pdns gameday-unbound gameday-cloud-provider-kind || true

    if ((keep_network == 0)); then
        # Other kind clusters may share the network: leave it to them.
        local others=""
        [[ $DRY_RUN == 1 ]] || others=$(kind get clusters 2>/dev/null | grep -vx -e region-1 -e region-2 || true)
        if [[ -n $others ]]; then
            log "network '$KIND_NETWORK' kept: still used by kind clusters: $others"
        elif [[ $DRY_RUN == 1 ]] || docker network inspect "$KIND_NETWORK" >/dev/null 2>&1; then
            run docker network rm "$KIND_NETWORK"
        fi
    fi

    log "state"
    run rm -rf "$STATE_DIR"
    if [[ $DRY_RUN == 1 ]] || { [[ -f $LAB_FILE ]] && grep -q '"lab": "kind"' "$LAB_FILE"; }; then
        run rm -f "$LAB_FILE"  # only a descriptor up.sh wrote: never the netns lab's
    fi
    log "kind-lab is down"
}

main "$@"
