"""Prometheus rules and the Grafana dashboard: promtool accepts the rules (when installed:
`make promtool`), every alert has expr/for/severity/annotations, and every metric an expression
names is one this code exports (or a recording rule defined here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from prometheus_client import CollectorRegistry

from app.observability.metrics import Metrics
from matching.model import Outcome
from matching.resilience import CircuitBreaker

ROOT = Path(__file__).resolve().parent.parent
RULES = [ROOT / "deploy/prometheus/recording.yaml", ROOT / "deploy/prometheus/alerts.yaml"]
DASHBOARD = ROOT / "deploy/grafana/vop-dashboard.json"
SEVERITIES = {"page", "critical", "warning", "ticket"}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "sum", "min", "max", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "clamp_min",
    "clamp_max", "abs", "time", "vector", "scalar", "absent", "topk", "bottomk", "quantile", "deriv", "delta",
    "le", "inf", "nan",
}  # fmt: skip


def exported_sample_names() -> set[str]:
    m = Metrics(routes=("/vop/v1/payee-verifications",), registry=CollectorRegistry())
    m.observe_request("/vop/v1/payee-verifications", 200, 0.001)
    m.observe_outcome(Outcome("name", "MTCH", "exact"))
    m.observe_bulk(3)
    m.track_breaker(CircuitBreaker("redis"))
    m.flush_all()
    return {s.name for fam in m.registry.collect() for s in fam.samples}


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def load_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULES:
        doc = yaml.safe_load(path.read_text())
        assert set(doc) == {"groups"}, path
        groups.extend(doc["groups"])
    return groups


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not installed: run `make promtool` (Debian package prometheus)", pytrace=False
        )
    out = subprocess.run(
        [promtool, "check", "rules", *map(str, RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_schema_is_strict() -> None:
    seen: set[str] = set()
    alerts = 0
    for group in load_groups():
        assert set(group) <= {"name", "interval", "rules"}, group.get("name")
        assert group["rules"], group.get("name")
        for rule in group["rules"]:
            assert isinstance(rule.get("expr"), str)
            assert rule["expr"].strip()
            if "record" in rule:
                assert set(rule) <= {"record", "expr", "labels"}
                assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
                continue
            alerts += 1
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule.get("alert")
            assert re.fullmatch(r"Vop[A-Z][A-Za-z0-9]+", rule["alert"])
            assert rule["alert"] not in seen
            seen.add(rule["alert"])
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
    assert alerts >= 10
    required = {"VopLatencyP99High", "VopErrorRatioHigh", "VopErrorBudgetBurnFast", "VopErrorBudgetBurnSlow",
                "VopIndexStale", "VopRedisDown", "VopShedRateHigh"}  # fmt: skip
    assert required <= seen


def test_exprs_only_name_exported_metrics() -> None:
    exported = exported_sample_names()
    groups = load_groups()
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    known = exported | recorded
    for group in groups:
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, (rule.get("alert") or rule.get("record"), unknown)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    for expr in exprs:
        assert not metric_names(expr) - known, (expr, metric_names(expr) - known)


def test_expr_parser_finds_names() -> None:
    expr = 'sum by (le) (rate(vop_x_bucket{route=~"/a.*"}[5m])) / vop:y:ratio_rate5m > (14.4 * 0.00001)'
    assert metric_names(expr) == {"vop_x_bucket", "vop:y:ratio_rate5m"}
    assert "nonexistent_metric" in metric_names("nonexistent_metric > 1")
