# Deployment and cluster helpers (`just --list`). Tests and the demo are in the Makefile.
# Recipes that call the API send `X-API-Key: $API_KEY` when API_KEY is set in the environment
# (local compose and the local overlay accept API_KEY=local-dev-key).

set shell := ["bash", "-euo", "pipefail", "-c"]

# Image name and tag for `build`, `dev-k8s` (the local overlay expects log-analyzer:dev).
image := env("IMAGE", "log-analyzer")
tag := env("TAG", "dev")
k8s_namespace := "log-analyzer"
api_local := env("API_URL", "http://127.0.0.1:8000")
api_in_cluster := "http://log-analyzer.log-analyzer.svc.cluster.local:8000"

# List the recipes
default:
    @just --list

# Build the project image (one image: API, workers, Flower)
build:
    docker build \
        --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        -t {{ image }}:{{ tag }} .
    docker image ls {{ image }}:{{ tag }}

# Port-forward the cluster's Loki (3100), llama.cpp (8080) and Tempo (4317) to localhost, in the background
dev:
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p .run
    pids=.run/port-forward.pids
    if [ -s "$pids" ]; then
        echo "port-forwards already running (pids $(tr '\n' ' ' < "$pids")); stop: kill \$(cat $pids) && rm $pids" >&2
        exit 1
    fi
    kubectl -n monitoring port-forward svc/loki 3100:3100 > .run/pf-loki.log 2>&1 &
    echo $! >> "$pids"
    kubectl -n llm port-forward svc/llama-cpp 8080:8080 > .run/pf-llama.log 2>&1 &
    echo $! >> "$pids"
    kubectl -n monitoring port-forward svc/tempo 4317:4317 > .run/pf-tempo.log 2>&1 &
    echo $! >> "$pids"
    echo "port-forwards started (pids $(tr '\n' ' ' < "$pids"); logs in .run/pf-*.log)"
    echo "stop them with: kill \$(cat $pids) && rm $pids"
    echo "then run the API and a worker from source with:"
    echo "  export LOKI_URL=http://127.0.0.1:3100 LLAMA_URL=http://127.0.0.1:8080 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317"

# Stream an analysis of the last hour of `namespace` from the local API (compose or `just dev`)
test-stream namespace="shop":
    #!/usr/bin/env bash
    set -euo pipefail
    end=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    start=$(date -u -d '1 hour ago' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v-1H +%Y-%m-%dT%H:%M:%SZ)
    body=$(printf '{"time_range": {"start": "%s", "end": "%s"}, "filters": {"namespace": "%s"}}' "$start" "$end" "{{ namespace }}")
    auth=()
    if [ -n "${API_KEY:-}" ]; then auth=(-H "X-API-Key: ${API_KEY}"); fi
    curl -N -sS --fail-with-body -X POST "{{ api_local }}/v1/analyze/stream" \
        -H 'Content-Type: application/json' ${auth[@]+"${auth[@]}"} -d "$body"
    echo

# Same, from a throw-away curl pod inside the cluster, against the in-cluster Service
test-k8s namespace="shop":
    #!/usr/bin/env bash
    set -euo pipefail
    end=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    start=$(date -u -d '1 hour ago' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v-1H +%Y-%m-%dT%H:%M:%SZ)
    body=$(printf '{"time_range": {"start": "%s", "end": "%s"}, "filters": {"namespace": "%s"}}' "$start" "$end" "{{ namespace }}")
    auth=()
    if [ -n "${API_KEY:-}" ]; then auth=(-H "X-API-Key: ${API_KEY}"); fi
    kubectl run "log-analyzer-curl-$(date +%s)" --rm -i --restart=Never --quiet \
        --image=curlimages/curl -- \
        curl -N -sS --fail-with-body -X POST "{{ api_in_cluster }}/v1/analyze/stream" \
        -H 'Content-Type: application/json' ${auth[@]+"${auth[@]}"} -d "$body"

# Build the image, import it into k3s's containerd and apply the local overlay
dev-k8s: build
    docker save {{ image }}:{{ tag }} | sudo k3s ctr images import -
    kubectl apply -k deploy/k8s/overlays/local
    kubectl -n {{ k8s_namespace }} rollout status statefulset/redis --timeout=180s
    kubectl -n {{ k8s_namespace }} rollout status deployment/log-analyzer-worker --timeout=300s
    kubectl -n {{ k8s_namespace }} rollout status deployment/log-analyzer-api --timeout=300s

# Stream an analysis from the local k3s deployment (dev-k8s) through a port-forward to its Service
test-k8s-local namespace="shop":
    #!/usr/bin/env bash
    set -euo pipefail
    port=18000
    kubectl -n {{ k8s_namespace }} port-forward svc/log-analyzer "$port:8000" > /dev/null 2>&1 &
    pf=$!
    trap 'kill "$pf" 2>/dev/null || true' EXIT
    for _ in $(seq 1 50); do
        curl -fsS "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$port/ready" || { echo "API not ready (Redis or workers down?)" >&2; exit 1; }
    echo
    API_URL="http://127.0.0.1:$port" {{ just_executable() }} test-stream "{{ namespace }}"

# Apply the prod overlay (the Secrets must exist first: docs/deploy.md)
deploy:
    #!/usr/bin/env bash
    set -euo pipefail
    for secret in log-analyzer-secrets log-analyzer-gateway-api-keys; do
        if ! kubectl -n {{ k8s_namespace }} get secret "$secret" > /dev/null 2>&1; then
            echo "secret {{ k8s_namespace }}/$secret is missing: create it first (docs/deploy.md, 'Secrets')" >&2
            exit 1
        fi
    done
    kubectl apply -k deploy/k8s/overlays/prod
    kubectl -n {{ k8s_namespace }} rollout status deployment/log-analyzer-api --timeout=300s

# Follow the logs of one component: api, worker, worker-backfill, flower or redis
logs component="api":
    kubectl -n {{ k8s_namespace }} logs -f --prefix --all-containers --max-log-requests 20 \
        -l app.kubernetes.io/name=log-analyzer,app.kubernetes.io/component={{ component }}
