"""Metrics: values move after traffic, the exposition parses, workers' values add up across
processes, and no label ever carries personal data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.observability.metrics import METRIC_NAMES, Metrics, reap_dead_processes
from matching.model import Outcome
from matching.resilience import CircuitBreaker
from tests.conftest import ACCOUNTS, IBAN_PERSON, accounts_table, now_rfc3339

ROUTE = "/vop/v1/payee-verifications"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


class FakeIndex:
    def __init__(self, version: int, n: int) -> None:
        self.version = version
        self.built_at = time.time() - 10
        self.build_seconds = 0.25
        self._n = n

    def __len__(self) -> int:
        return self._n


def test_request_metrics_move_and_parse() -> None:
    m = Metrics(routes=(ROUTE,), registry=CollectorRegistry())
    for seconds in (0.0004, 0.003, 0.2):
        m.request_started()
        m.request_finished(ROUTE, 200, seconds)
    m.observe_request(ROUTE, 503, 0.001)
    m.observe_outcomes([Outcome("name", "MTCH", "exact")])
    m.observe_outcomes([Outcome("name", "CMTC", "typo", "Max"), Outcome("id", "NOAP", "account_unknown")] * 3)
    m.observe_bulk(7)
    m.shed("deadline")
    m.rate_limited()
    m.enumeration_guarded("throttled")
    text = m.render().decode()
    hist = "vop_http_request_duration_seconds"
    assert value(text, hist + "_count", route=ROUTE, status="200") == 3
    assert value(text, hist + "_sum", route=ROUTE, status="200") == pytest.approx(0.2034)
    assert value(text, hist + "_bucket", route=ROUTE, status="200", le="0.0005") == 1
    assert value(text, hist + "_bucket", route=ROUTE, status="200", le="0.005") == 2
    assert value(text, hist + "_bucket", route=ROUTE, status="200", le="+Inf") == 3
    assert value(text, hist + "_count", route=ROUTE, status="503") == 1
    assert value(text, "vop_checks_total", kind="name", code="MTCH", reason="exact") == 1
    assert value(text, "vop_checks_total", kind="name", code="CMTC", reason="typo") == 3
    assert value(text, "vop_checks_total", kind="id", code="NOAP", reason="account_unknown") == 3
    assert value(text, "vop_bulk_size_count") == 1
    assert value(text, "vop_bulk_size_bucket", le="10.0") == 1
    assert value(text, "vop_http_shed_total", reason="deadline") == 1
    assert value(text, "vop_rate_limited_total", scope="client") == 1
    assert value(text, "vop_enumeration_guard_total", action="throttled") == 1
    assert value(text, "vop_http_requests_in_flight") == 0
    # a second render does not double-count
    assert value(m.render().decode(), hist + "_count", route=ROUTE, status="200") == 3


def test_sampled_gauges_index_breaker_audit_load() -> None:
    m = Metrics(routes=(ROUTE,), registry=CollectorRegistry())
    current: list[FakeIndex | None] = [None]
    m.track_index(lambda: current[0])
    breaker = CircuitBreaker("redis", failure_threshold=1)
    m.track_breaker(breaker)
    audit = {"audit_pending": 12, "audit_dropped": 3, "audit_write_errors": 1, "audit_writer_restarts": 1}
    m.track_audit(lambda: audit)
    gate = {"in_flight": 4, "shed": 2}
    m.track_load(lambda: gate["in_flight"], lambda: gate["shed"])
    text = m.render().decode()
    assert value(text, "vop_index_loaded") == 0
    current[0] = FakeIndex(3, 5)
    breaker.record_failure()
    text = m.render().decode()
    assert value(text, "vop_index_loaded") == 1
    assert value(text, "vop_index_accounts") == 5
    assert value(text, "vop_index_version") == 3
    assert value(text, "vop_index_reloads_total", result="ok") == 1
    assert value(text, "vop_index_reload_duration_seconds_sum") == pytest.approx(0.25)
    assert value(text, "vop_index_last_change_age_seconds") >= 9
    assert value(text, "vop_circuit_breaker_state", breaker="redis") == 2
    assert value(text, "vop_circuit_breaker_opened_total", breaker="redis") == 1
    assert value(text, "vop_audit_backlog") == 12
    assert value(text, "vop_audit_dropped_total") == 3
    assert value(text, "vop_audit_write_errors_total") == 1
    assert value(text, "vop_audit_writer_restarts_total") == 1
    audit["audit_dropped"] = 10  # cumulative in the trail: the counter follows, never double-counts
    assert value(m.render().decode(), "vop_audit_dropped_total") == 10
    assert value(m.render().decode(), "vop_audit_dropped_total") == 10
    assert value(text, "vop_http_requests_in_flight") == 4
    assert value(text, "vop_http_shed_total", reason="overload") == 2
    gate["shed"] = 5
    assert value(m.render().decode(), "vop_http_shed_total", reason="overload") == 5


def test_every_declared_metric_is_exposed() -> None:
    m = Metrics(routes=(ROUTE,), registry=CollectorRegistry())
    m.track_index(lambda: FakeIndex(1, 1))
    m.track_breaker(CircuitBreaker("redis"))
    text = m.render().decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {n.removesuffix("_total") for n in METRIC_NAMES} <= families


PII_SHAPES = [
    re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}"),  # an IBAN
    re.compile(r"[A-Z][a-z]+ [A-Z][a-z]+"),  # "First Last"
]


def assert_no_pii_labels(text: str) -> None:
    names = {n.lower() for a in ACCOUNTS for n in a["names"]}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            for v in s.labels.values():
                assert v.lower() not in names, (s.name, v)
                assert not any(p.search(v) for p in PII_SHAPES), (s.name, v)


def test_labels_never_carry_client_strings() -> None:
    m = Metrics(routes=(ROUTE,), registry=CollectorRegistry())
    m.observe_request("/vop/v1/payee-verifications/DE89370400440532013000", 404, 0.001)
    m.observe_request(ROUTE, 9999, 0.001)
    m.observe_outcomes([Outcome("name", "NMTC", "Max Mustermann"), Outcome("name", "NMTC", IBAN_PERSON)])
    m.shed("Max Mustermann")
    m.enumeration_guarded(IBAN_PERSON)
    text = m.render().decode()
    assert_no_pii_labels(text)
    assert value(text, "vop_http_request_duration_seconds_count", route="other", status="404") == 1
    assert value(text, "vop_http_request_duration_seconds_count", route=ROUTE, status="other") == 1
    assert value(text, "vop_checks_total", kind="name", code="NMTC", reason="other") == 2
    with pytest.raises(ValueError, match="snake_case"):
        m.track_breaker(CircuitBreaker("Max Mustermann"))


def test_flusher_thread_flushes() -> None:
    m = Metrics(routes=(ROUTE,), registry=CollectorRegistry(), flush_interval=0.02)
    m.start()
    try:
        m.observe_request(ROUTE, 200, 0.001)
        deadline = time.monotonic() + 2
        while m.request_duration.labels(ROUTE, "200")._sum.get() == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        m.stop()


_CHILD = textwrap.dedent(
    """
    import sys
    from app.observability.metrics import Metrics
    from matching.model import Outcome
    m = Metrics(routes=("/r",))
    assert m.multiprocess
    for _ in range(int(sys.argv[1])):
        m.observe_request("/r", 200, 0.002)
        m.observe_outcome(Outcome("name", "MTCH", "exact"))
    m.in_flight = 3
    m.stop()
    """
)


def test_multiprocess_values_add_up_across_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (5, 7):
        subprocess.run([sys.executable, "-c", _CHILD, str(n)], env=env, check=True, timeout=60)
    reap_dead_processes(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", "from app.observability.metrics import Metrics; "
         "import sys; sys.stdout.write(Metrics(routes=('/r',)).render().decode())"],
        env=env, check=True, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    text = out.stdout
    assert value(text, "vop_http_request_duration_seconds_count", route="/r", status="200") == 12
    assert value(text, "vop_checks_total", kind="name", code="MTCH", reason="exact") == 12
    # both writers are dead: their live gauges are gone (not summed forever)
    assert value(text, "vop_http_requests_in_flight") == 0


# ---- the real server with two workers -------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def _post(base: str) -> tuple[int, int]:
    payload = {
        "party": {"name": "Max Mustermann"},
        "partyAccount": {"iban": IBAN_PERSON},
        "partyAgent": {"financialInstitutionId": {"bicfi": "VOPBDEFFXXX"}},
        "requestingAgent": {"financialInstitutionId": {"bicfi": "REQBDEFFXXX"}},
    }
    req = urllib.request.Request(  # noqa: S310 (loopback URL built here)
        base + ROUTE,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Request-ID": str(uuid.uuid4()),
                 "X-Request-Timestamp": now_rfc3339(), "Connection": "close"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        return int(resp.status), os.getpid()


@pytest.mark.slow
def test_metrics_sum_over_two_workers(tmp_path: Path) -> None:
    from tests.test_shutdown import ServerProcess

    with ServerProcess(tmp_path, accounts_table(), workers=2) as server:
        n = 200
        with ThreadPoolExecutor(8) as pool:
            statuses = [s for s, _ in pool.map(lambda _: _post(server.base), range(n))]
        assert statuses == [200] * n
        files = list(Path(server.multiproc_dir()).glob("histogram_*.db"))
        assert len(files) == 2, "both workers must have served requests"
        deadline = time.monotonic() + 10
        while True:  # other worker's pending counts reach its files within one flush interval
            with urllib.request.urlopen(server.base + "/metrics", timeout=5) as r:  # noqa: S310
                text = r.read().decode()
            got = value(text, "vop_http_request_duration_seconds_count", route=ROUTE, status="200")
            if got == n or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert got == n
        assert value(text, "vop_checks_total", kind="name", code="MTCH", reason="exact") == n
        assert value(text, "vop_index_accounts") == len(ACCOUNTS)
        assert_no_pii_labels(text)
