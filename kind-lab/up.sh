#!/usr/bin/env bash
# Bring up kind-lab: two kind clusters as two regions on one Docker network, the storefront and
# PostgreSQL (primary in region-1, streaming standby in region-2), PowerDNS + unbound as the
# global DNS, then write the lab descriptor the experiments read.
#
#   kind-lab/up.sh [--dry-run] [--gitops] [STEP...]
#
# STEPs, in order (default: all but gitops; each is idempotent, so re-running is safe):
#   network clusters images database storefront dns descriptor [gitops]
# Every wait is bounded; the bounds of a workflow step's STEPs add up to less than its
# timeout-minutes (.github/workflows/game-day.yml; a test checks it).
# --dry-run  print every command (with the pinned LoadBalancer IPs) and change nothing.
# --gitops   also install Argo CD in region-1 and fan the base out to both clusters.
# Environment: GAMEDAY_LAB (descriptor path, default .gameday/lab.json), GAMEDAY_DB_PASSWORD,
# GAMEDAY_GITOPS_REPO, PYTHON (an interpreter that can import gameday, to validate the
# descriptor), KUBECONFIG (kind adds the contexts kind-region-1 and kind-region-2 to it).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_STEPS=(network clusters images database storefront dns descriptor)
DB_PASSWORD=${GAMEDAY_DB_PASSWORD:-gameday-kind-lab}
declare -A WEB_IP DB_IP
# The overlays pin these (spec.loadBalancerIP); up.sh checks that cloud-provider-kind used them.
declare -A PINNED_IP=(
    [region-1/storefront]=$LB_IP_REGION_1_STOREFRONT [region-1/postgres-lb]=$LB_IP_REGION_1_POSTGRES
    [region-2/storefront]=$LB_IP_REGION_2_STOREFRONT [region-2/postgres-lb]=$LB_IP_REGION_2_POSTGRES
)

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

k() { kubectl --context "$(context_of "$1")" -n "$NAMESPACE" "${@:2}"; }

write_file() {  # write_file PATH MODE < content; never printed (it may hold the password)
    printf '+ write %q (mode %s)\n' "$1" "$2"
    if [[ $DRY_RUN == 1 ]]; then cat >/dev/null; return; fi
    install -d "$(dirname "$1")"
    install -m "$2" /dev/stdin "$1"
}

render() {  # render TEMPLATE: fill in the @NAME@ placeholders from the environment
    sed -e "s/@PDNS_IP@/$PDNS_IP/g" \
        -e "s/@KIND_REVERSE_ZONE@/$KIND_REVERSE_ZONE/g" \
        -e "s/@REGION1_ADDRESS@/${WEB_IP[region-1]:-}/g" \
        -e "s/@REGION2_ADDRESS@/${WEB_IP[region-2]:-}/g" "$1"
}

step_network() {
    log "Docker network '$KIND_NETWORK' ($KIND_SUBNET)"
    need docker
    if exists docker network inspect "$KIND_NETWORK"; then
        local subnet
        subnet=$(docker network inspect "$KIND_NETWORK" -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}')
        [[ " $subnet " == *" $KIND_SUBNET "* ]] ||
            die "network '$KIND_NETWORK' exists with subnet '$subnet', not $KIND_SUBNET: run kind-lab/down.sh (or delete the other kind clusters) first"
        return
    fi
    run docker network create --driver bridge \
        --subnet "$KIND_SUBNET" --gateway "$KIND_GATEWAY" --ip-range "$KIND_IP_RANGE" \
        -o com.docker.network.bridge.enable_ip_masquerade=true \
        -o com.docker.network.driver.mtu=1500 "$KIND_NETWORK"
}

step_clusters() {
    log "kind clusters ${REGIONS[*]} and cloud-provider-kind"
    need docker kind kubectl
    local region
    for region in "${REGIONS[@]}"; do
        if exists kind get kubeconfig --name "$region"; then
            log "cluster $region exists"
        else
            KIND_EXPERIMENTAL_DOCKER_NETWORK=$KIND_NETWORK run kind create cluster \
                --name "$region" --image "$KIND_NODE_IMAGE" \
                --config "$KIND_LAB/kind/$region.yaml" --wait 180s
        fi
    done
    # One cloud-provider-kind serves every kind cluster: each LoadBalancer Service gets a
    # container on the kind network whose address is the Service's external IP.
    # It creates its load-balancer containers on KIND_EXPERIMENTAL_DOCKER_NETWORK, else on
    # "kind": passed on, so that a network of another name works too.
    if ! exists docker inspect gameday-cloud-provider-kind; then
        run docker run -d --name gameday-cloud-provider-kind --restart unless-stopped \
            --network "$KIND_NETWORK" -e KIND_EXPERIMENTAL_DOCKER_NETWORK="$KIND_NETWORK" \
            -v /var/run/docker.sock:/var/run/docker.sock "$CLOUD_PROVIDER_KIND_IMAGE"
    fi
}

# The storefront is built into Docker's own image store, saved as a single-platform archive and
# loaded from that into each cluster, which works on either image store:
# - `docker buildx build --output type=docker,dest=...` needs the containerd image store with
#   buildx's default `docker` driver (buildx v0.36.1 driver/docker/driver.go: DockerExporter is
#   useContainerdSnapshotter; build/opt.go: "Docker exporter is not supported for the docker
#   driver"), and the GitHub runner's Docker 28.0.4 uses the classic store;
# - `kind load docker-image` fails with "content digest not found" on the containerd store
#   (kind#3795): its `docker save` names every platform of the image's index.
# `docker save --platform` (Docker Engine 28.0, API 1.48) keeps the archive to the one platform
# the nodes run. PostgreSQL is not loaded at all: each node's kubelet pulls it from Docker Hub
# (imagePullPolicy IfNotPresent).
DOCKER_API_MIN=1.48

step_images() {
    log "images: build the storefront and load it into both clusters (the kubelets pull PostgreSQL)"
    need docker kind
    local archive="$STATE_DIR/storefront-image.tar" api platform region
    run install -d "$STATE_DIR"
    capture api "$DOCKER_API_MIN" docker version --format '{{.Server.APIVersion}}'
    version_at_least "$api" "$DOCKER_API_MIN" ||
        die "Docker Engine API $api is older than $DOCKER_API_MIN: kind-lab needs Docker Engine 28.0 or later (docker save --platform)"
    capture platform linux/amd64 docker version --format '{{.Server.Os}}/{{.Server.Arch}}'
    run docker buildx build --load --provenance=false --platform "$platform" \
        -f "$KIND_LAB/storefront/Dockerfile" -t "$STOREFRONT_IMAGE" "$REPO_ROOT"
    run docker save --platform "$platform" -o "$archive" "$STOREFRONT_IMAGE"
    for region in "${REGIONS[@]}"; do
        run kind load image-archive --name "$region" "$archive"
    done
}

# lb_ip REGION SERVICE VAR: wait until the Service has its pinned LoadBalancer IP and put it in
# VAR[REGION].
# shellcheck disable=SC2034  # `into` is a nameref: assigning it sets the caller's array
lb_ip() {
    local region=$1 svc=$2 ip="" start=$SECONDS
    local -n into=$3
    local pinned=${PINNED_IP[$region/$svc]}
    local cmd=(kubectl --context "$(context_of "$region")" -n "$NAMESPACE" --request-timeout=10s
        get service "$svc" -o 'jsonpath={.status.loadBalancer.ingress[0].ip}')
    printf '%s  # until it prints %s (pinned), at most 120s\n' "$(show "${cmd[@]}")" "$pinned"
    if [[ $DRY_RUN == 1 ]]; then
        into["$region"]=$pinned
        return
    fi
    until ip=$("${cmd[@]}" 2>/dev/null) && [[ -n $ip ]]; do
        ((SECONDS - start < 120)) || die "no LoadBalancer IP for $region/$svc after 120s: is gameday-cloud-provider-kind running?"
        sleep 1
    done
    [[ $ip == "$pinned" ]] ||
        die "$region/$svc has LoadBalancer IP $ip, not the pinned $pinned: cloud-provider-kind must honour spec.loadBalancerIP ($CLOUD_PROVIDER_KIND_IMAGE)"
    into["$region"]=$ip
}

addresses() {
    local region
    for region in "${REGIONS[@]}"; do
        [[ -n ${WEB_IP[$region]:-} ]] || lb_ip "$region" storefront WEB_IP
        [[ -n ${DB_IP[$region]:-} ]] || lb_ip "$region" postgres-lb DB_IP
    done
}

# region_config REGION ROLE PRIMARY_HOST: namespace, password Secret, role ConfigMap.
region_config() {
    local region=$1 role=$2 primary=$3 ctx
    ctx=$(context_of "$region")
    run kubectl --context "$ctx" apply -f "$KIND_LAB/base/namespace.yaml"
    apply_generated "$ctx" -n "$NAMESPACE" create secret generic gameday-db-auth \
        --from-file=password="$STATE_DIR/db-password"
    apply_generated "$ctx" -n "$NAMESPACE" create configmap gameday-db \
        --from-literal=role="$role" --from-literal=primary_host="$primary"
}

psql_in() {  # psql_in REGION SQL...: run SQL on the region's database, as the local superuser
    local region=$1
    shift
    run kubectl --context "$(context_of "$region")" -n "$NAMESPACE" exec postgres-0 -c postgres -- \
        psql -v ON_ERROR_STOP=1 -U "$DB_USER" -d "$DB_NAME" -tA "$@"
}

standby_streaming() {
    [[ $(k region-2 exec postgres-0 -c postgres -- psql -U "$DB_USER" -d "$DB_NAME" -tAc \
        "select status from pg_stat_wal_receiver") == streaming ]]
}

step_database() {
    log "PostgreSQL: primary in region-1, streaming standby in region-2"
    need kubectl
    printf '%s' "$DB_PASSWORD" | write_file "$STATE_DIR/db-password" 600
    region_config region-1 primary ""
    run kubectl --context "$(context_of region-1)" apply -k "$KIND_LAB/overlays/region-1"
    run kubectl --context "$(context_of region-1)" -n "$NAMESPACE" rollout status statefulset/postgres --timeout=240s
    wait_until 60 kubectl --context "$(context_of region-1)" -n "$NAMESPACE" exec postgres-0 -c postgres -- \
        pg_isready -h 127.0.0.1 -U "$DB_USER" -d "$DB_NAME"
    run_in "$REPO_ROOT/gameday/labs/storefront.sql" \
        kubectl --context "$(context_of region-1)" -n "$NAMESPACE" exec -i postgres-0 -c postgres -- \
        psql -v ON_ERROR_STOP=1 -U "$DB_USER" -d "$DB_NAME"
    lb_ip region-1 postgres-lb DB_IP

    region_config region-2 standby "${DB_IP[region-1]}"
    run kubectl --context "$(context_of region-2)" apply -k "$KIND_LAB/overlays/region-2"
    run kubectl --context "$(context_of region-2)" -n "$NAMESPACE" rollout status statefulset/postgres --timeout=240s
    printf '+ kubectl --context %s -n %s exec postgres-0 -c postgres -- psql -tAc %q  # until "streaming", at most 60s\n' \
        "$(context_of region-2)" "$NAMESPACE" "select status from pg_stat_wal_receiver"
    if [[ $DRY_RUN != 1 ]]; then
        local start=$SECONDS
        until standby_streaming 2>/dev/null; do
            ((SECONDS - start < 60)) || die "region-2's standby is not streaming from ${DB_IP[region-1]} after 60s: kubectl --context kind-region-2 -n gameday logs postgres-0"
            sleep 1
        done
    fi
    psql_in region-1 -c "select count(*) from gameday_canary"
}

step_storefront() {
    log "storefront in both regions"
    need kubectl curl
    local region
    for region in "${REGIONS[@]}"; do
        # Applied with the database above; applying again is harmless and makes this step whole.
        run kubectl --context "$(context_of "$region")" apply -k "$KIND_LAB/overlays/$region"
        run kubectl --context "$(context_of "$region")" -n "$NAMESPACE" rollout status deployment/storefront --timeout=120s
    done
    addresses
    wait_until 60 curl -fsS --max-time 2 "http://${WEB_IP[region-1]}:$STOREFRONT_PORT/healthz"
    wait_until 30 curl -fsS --max-time 2 "http://${WEB_IP[region-2]}:$STOREFRONT_PORT/whoami"
}

# wait_dns SERVER EXPECTED: until SERVER answers the global name with EXPECTED alone.
wait_dns() {
    local cmd=(dig +short +time=1 +tries=1 "@$1" "$DNS_NAME" A) start=$SECONDS
    printf '%s  # until it answers %s, at most 30s\n' "$(show "${cmd[@]}")" "$2"
    [[ $DRY_RUN == 1 ]] && return 0
    until [[ $("${cmd[@]}" 2>/dev/null) == "$2" ]]; do
        ((SECONDS - start < 30)) || die "$1 does not answer $DNS_NAME with $2 after 30s: docker logs gameday-pdns"
        sleep 1
    done
}

step_dns() {
    log "global DNS: PowerDNS ($PDNS_IP) and unbound ($RESOLVER_IP) on the kind network"
    need docker dig
    addresses
    local dir="$STATE_DIR/dns"
    render "$KIND_LAB/dns/gameday.test.zone.in" | write_file "$dir/pdns/gameday.test.zone" 644
    write_file "$dir/pdns/pdns.conf" 644 < "$KIND_LAB/dns/pdns.conf"
    write_file "$dir/pdns/named.conf" 644 < "$KIND_LAB/dns/named.conf"
    render "$KIND_LAB/dns/unbound.conf.in" | write_file "$dir/unbound.conf" 644
    # Recreated every time: the zone holds this run's LoadBalancer IPs.
    run docker rm -f gameday-pdns gameday-unbound || true
    run docker run -d --name gameday-pdns --restart unless-stopped \
        --network "$KIND_NETWORK" --ip "$PDNS_IP" \
        -v "$dir/pdns:/etc/gameday-pdns:ro" \
        --entrypoint /usr/local/sbin/pdns_server "$PDNS_IMAGE" --config-dir=/etc/gameday-pdns
    # --no-healthcheck: the image's HEALTHCHECK resolves a public name, which this resolver
    # refuses (nothing leaves the lab), so the container would always be "unhealthy"
    run docker run -d --name gameday-unbound --restart unless-stopped --no-healthcheck \
        --network "$KIND_NETWORK" --ip "$RESOLVER_IP" \
        -v "$dir/unbound.conf:/opt/unbound/etc/unbound/unbound.conf:ro" "$UNBOUND_IMAGE"
    # ifurlup answers with the first set until its first checks have run: warm it up.
    wait_dns "$PDNS_IP" "${WEB_IP[region-1]}"
    wait_dns "$RESOLVER_IP" "${WEB_IP[region-1]}"
}

step_descriptor() {
    log "lab descriptor $LAB_FILE"
    addresses
    local json
    json=$(LAB_JSON_PASSWORD=$DB_PASSWORD \
        R1_WEB=${WEB_IP[region-1]} R1_DB=${DB_IP[region-1]} \
        R2_WEB=${WEB_IP[region-2]} R2_DB=${DB_IP[region-2]} \
        NAMESPACE=$NAMESPACE REGION_LABEL=$REGION_LABEL STOREFRONT_PORT=$STOREFRONT_PORT \
        DB_NAME=$DB_NAME DB_USER=$DB_USER DB_PORT=$DB_PORT DNS_ZONE=$DNS_ZONE DNS_NAME=$DNS_NAME \
        PDNS_IP=$PDNS_IP RESOLVER_IP=$RESOLVER_IP "$PYTHON" - <<'PY'
import json, os
e = os.environ
def region(name, role, web, db):
    return {
        "name": name, "role": role, "driver": "kubernetes",
        "address": web, "storefront_url": f"http://{web}:{e['STOREFRONT_PORT']}",
        "db_host": db, "db_port": int(e["DB_PORT"]),
        "kube_context": f"kind-{name}", "namespace": e["NAMESPACE"],
        "node_selector": f"{e['REGION_LABEL']}={name}",
        "node_containers": [f"{name}-control-plane", f"{name}-worker"],
    }
print(json.dumps({
    "schema": "gameday.lab/v1",
    "lab": "kind",
    "regions": [region("region-1", "primary", e["R1_WEB"], e["R1_DB"]),
                region("region-2", "secondary", e["R2_WEB"], e["R2_DB"])],
    "dns": {"zone": e["DNS_ZONE"], "name": e["DNS_NAME"],
            "authoritative": {"address": e["PDNS_IP"], "port": 53},
            "resolver": {"address": e["RESOLVER_IP"], "port": 53},
            "ttl_s": 1, "health_interval_s": 1},
    "database": {"name": e["DB_NAME"], "user": e["DB_USER"], "password": e["LAB_JSON_PASSWORD"],
                 "port": int(e["DB_PORT"]), "replication": "async",
                 "canary_table": "gameday_canary"},
}, indent=2))
PY
)
    if [[ $DRY_RUN == 1 ]]; then
        printf '+ write %q (mode 600), the password masked here:\n' "$LAB_FILE"
        printf '%s\n' "--- lab descriptor ---" "${json//"$DB_PASSWORD"/********}" "--- end lab descriptor ---"
        return
    fi
    printf '%s\n' "$json" | write_file "$LAB_FILE" 600
    (cd "$REPO_ROOT" && "$PYTHON" -c 'import sys; from gameday.foundation.descriptor import load; load(sys.argv[1])' "$LAB_FILE") ||
        die "the descriptor at $LAB_FILE does not validate: PYTHON=$PYTHON must import this checkout's gameday"
    log "kind-lab is up: GAMEDAY_LAB=$LAB_FILE chaos run experiments/game-day.json"
}

step_gitops() {
    log "GitOps: Argo CD $ARGOCD_VERSION in region-1, Applications for both regions"
    need kubectl kind git
    local c1 repo dir="$STATE_DIR/gitops" f
    c1=$(context_of region-1)
    repo=${GAMEDAY_GITOPS_REPO:-$(git -C "$REPO_ROOT" remote get-url origin 2>/dev/null || true)}
    [[ -n $repo || $DRY_RUN == 1 ]] || die "set GAMEDAY_GITOPS_REPO to a Git URL Argo CD can clone (this checkout has no origin)"
    apply_generated "$c1" create namespace argocd
    run kubectl --context "$c1" apply -n argocd --server-side \
        -f "https://raw.githubusercontent.com/argoproj/argo-cd/$ARGOCD_VERSION/manifests/install.yaml"
    run kubectl --context "$c1" -n argocd rollout status deployment/argocd-repo-server --timeout=300s
    run kubectl --context "$c1" -n argocd rollout status statefulset/argocd-application-controller --timeout=300s
    # Register region-2 by its address on the kind network, with kind's admin credentials.
    local kc="$dir/region-2.kubeconfig" ca cert key
    run install -d -m 700 "$dir"
    show kind get kubeconfig --internal --name region-2
    [[ $DRY_RUN == 1 ]] || kind get kubeconfig --internal --name region-2 > "$kc"
    capture ca CA kubectl --kubeconfig "$kc" config view --raw -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}'
    capture cert CERT kubectl --kubeconfig "$kc" config view --raw -o 'jsonpath={.users[0].user.client-certificate-data}'
    capture key KEY kubectl --kubeconfig "$kc" config view --raw -o 'jsonpath={.users[0].user.client-key-data}'
    printf '{"tlsClientConfig":{"caData":"%s","certData":"%s","keyData":"%s"}}' "$ca" "$cert" "$key" |
        write_file "$dir/region-2-cluster.json" 600
    apply_generated "$c1" -n argocd create secret generic cluster-region-2 \
        --from-literal=name=region-2 --from-literal=server=https://region-2-control-plane:6443 \
        --from-file=config="$dir/region-2-cluster.json"
    run kubectl --context "$c1" -n argocd label --overwrite secret cluster-region-2 \
        argocd.argoproj.io/secret-type=cluster
    for f in region-1 region-2; do
        sed "s|https://git.example.invalid/gameday.git|${repo:-REPO}|" "$KIND_LAB/clusters/$f.yaml" |
            write_file "$dir/$f.yaml" 644
        run kubectl --context "$c1" apply -f "$dir/$f.yaml"
    done
}

main() {
    local steps=() gitops=0 arg
    for arg in "$@"; do
        case $arg in
            --dry-run) DRY_RUN=1 ;;
            --gitops) gitops=1 ;;
            -h | --help) usage; exit 0 ;;
            network | clusters | images | database | storefront | dns | descriptor | gitops) steps+=("$arg") ;;
            *) usage >&2; die "unknown argument '$arg'" ;;
        esac
    done
    if ((${#steps[@]} == 0)); then
        steps=("${ALL_STEPS[@]}")
        ((gitops)) && steps+=(gitops)
    fi
    [[ $DRY_RUN == 1 ]] && log "dry run: nothing is changed; LoadBalancer IPs are the pinned ones"
    local step
    for step in "${steps[@]}"; do
        "step_$step"
    done
}

main "$@"
