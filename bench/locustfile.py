"""Locust load-test suite for the VoP responder (how to run it: bench/LOADTEST.md).

Scenarios (``--scenario``), each a FastHttpUser:

* ``single_mix`` — single checks drawn from a pre-generated deck in the ``--mix`` proportions of
  exact / close / no_match / unknown_iban / inactive probes (``bench.datagen.generate_probes``, so
  every answer is known) and ``invalid`` requests (one defect each, expected: 400 with a specific
  scheme ``code``). Any other answer is a failure; a 200/400 with the wrong content is also counted
  as a *wrong answer* per category and fails the SLO gate on its own.
* ``bulk`` — ``POST …/bulk`` with ``--bulk-size`` items (a comma list draws one size per request);
  every item of the answer is checked in request order.
* ``auth_negative`` — missing / garbage / tampered / alg=none / wrong-scheme tokens and a requester
  BIC that contradicts the token must get 401/403 (``--auth`` only).
* ``burst`` — each user fires ``--burst-size`` concurrent single checks, then pauses.

Load shapes (``--shape ramp|steps|spike|soak|constant``, all driven by ``--target-rps`` and
``--duration``) turn a request rate into users running at ``--user-rps`` each
(``constant_throughput``). Without ``--shape`` and ``--target-rps``, ``-u/-r/-t`` drive the run
and users send back to back (closed loop). At the end the SLO gate (``quitting``) sets the exit
code and prints a one-screen summary.

The deck is built once per process in the ``init`` event (and rebuilt at ``test_start`` on a
worker only if the options the master forwards change it), never per request.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
from gevent.pool import Pool
from locust import FastHttpUser, LoadTestShape, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

# Run as ``locust -f bench/locustfile.py`` from the repository root: make ``bench`` importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench.datagen import (  # noqa: E402
    DEMO_BIC,
    DEMO_SEED,
    PROBE_CATEGORIES,
    Probe,
    generate_accounts,
    generate_probes,
)

log = logging.getLogger("vop.locust")

VERIFY_PATH: Final = "/vop/v1/payee-verifications"
BULK_PATH: Final = VERIFY_PATH + "/bulk"
REQUESTING_BIC: Final = "REQBDEFFXXX"
DEFAULT_MIX: Final = "exact=60,close=20,no_match=15,unknown_iban=5,invalid=0"
MIX_CATEGORIES: Final = (*PROBE_CATEGORIES, "invalid")
SCENARIOS: Final = ("single_mix", "bulk", "auth_negative", "burst")
SHAPES: Final = ("ramp", "steps", "spike", "soak", "constant")
SAMPLES_PER_CATEGORY: Final = 3

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _add_options(parser: LocustArgumentParser) -> None:
    g = parser  # (argument groups would drop the web-UI flags such as is_secret)
    g.add_argument("--scenario", choices=SCENARIOS, default="single_mix", help="user scenario")
    g.add_argument(
        "--mix",
        default=DEFAULT_MIX,
        help=f"request mix, weights per category of {','.join(MIX_CATEGORIES)} (default {DEFAULT_MIX})",
    )
    g.add_argument("--snapshot", default="", help="Parquet snapshot the target serves (probes come from it)")
    g.add_argument(
        "--accounts",
        type=int,
        default=100_000,
        help="without --snapshot: regenerate this many demo accounts from the demo seed (default 100000)",
    )
    g.add_argument("--data-seed", type=int, default=DEMO_SEED, help="demo data seed (default: the demo seed)")
    g.add_argument("--probes", type=int, default=20_000, help="requests pre-generated per process")
    g.add_argument(
        "--max-names-per-iban",
        type=int,
        default=2,
        help="distinct names per IBAN in the deck, under the target's enumeration guard (0: no cap)",
    )
    g.add_argument("--party-bic", default=DEMO_BIC, help=f"partyAgent BIC the target serves ({DEMO_BIC})")
    g.add_argument("--requesting-bic", default=REQUESTING_BIC, help=f"requestingAgent BIC ({REQUESTING_BIC})")
    g.add_argument(
        "--bulk-size", default="100", help="bulk items per request; a comma list draws one each time"
    )
    g.add_argument("--auth", action="store_true", default=False, help="the target enforces JWT auth")
    g.add_argument("--token", default="", is_secret=True, help="bearer token sent with every request")
    g.add_argument("--token-file", default="", help="file holding the bearer token")
    g.add_argument("--shape", choices=SHAPES, default=None, help="load shape (default: -u/-r/-t)")
    g.add_argument("--target-rps", type=float, default=0.0, help="target HTTP requests/s (alone: constant)")
    g.add_argument("--duration", default="", help="shape duration: 90, 90s, 5m, 1h (default -t, else 60s)")
    g.add_argument("--ramp-s", type=float, default=-1.0, help="ramp time in s (default per shape)")
    g.add_argument("--steps", type=int, default=5, help="number of equal steps for --shape steps")
    g.add_argument("--spike-base", type=float, default=0.2, help="spike shape: baseline share of target")
    g.add_argument("--user-rps", type=float, default=10.0, help="requests/s per user under a target rate")
    g.add_argument("--burst-size", type=int, default=50, help="concurrent requests per burst")
    g.add_argument("--burst-pause", type=float, default=1.0, help="seconds between one user's bursts")
    g.add_argument("--slo-p99-ms", type=float, default=100.0, help="gate: p99 limit in ms (default 100)")
    g.add_argument("--slo-error-ratio", type=float, default=0.001, help="gate: failure ratio limit")
    g.add_argument("--slo-rate-ratio", type=float, default=0.95, help="gate: achieved/target rate minimum")
    g.add_argument("--summary-json", default="", help="also write the gate summary as JSON to this file")


def parse_duration(text: str) -> float:
    """``90`` / ``90s`` / ``5m`` / ``1h`` / ``1h30m`` → seconds."""
    text = text.strip().lower()
    if not text:
        raise ValueError("empty duration")
    try:
        return float(text)
    except ValueError:
        pass
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            raise ValueError(f"bad duration {text!r} (use e.g. 90, 90s, 5m, 1h30m)")
    if number:
        raise ValueError(f"bad duration {text!r}: a number without unit at the end")
    return total


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = dict.fromkeys(MIX_CATEGORIES, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in mix:
            raise ValueError(f"--mix: {part!r} is not CATEGORY=WEIGHT with CATEGORY in {MIX_CATEGORIES}")
        weight = float(value)
        if weight < 0:
            raise ValueError(f"--mix: negative weight for {key}")
        mix[key] = weight
    if sum(mix.values()) <= 0:
        raise ValueError("--mix: all weights are zero")
    return mix


def parse_sizes(text: str) -> list[int]:
    sizes = [int(p) for p in text.split(",") if p.strip()]
    if not sizes or min(sizes) < 1:
        raise ValueError("--bulk-size: give one or more positive integers, e.g. 100 or 10,100,1000")
    return sizes


def read_token(options: Any) -> str:
    if options.token:
        return str(options.token).strip()
    if options.token_file:
        return Path(options.token_file).read_text(encoding="utf-8").strip()
    return ""


# --------------------------------------------------------------------------------------------------
# The deck: pre-encoded requests with their expected answers
# --------------------------------------------------------------------------------------------------

# Header defects. "ok" sends valid X-Request-ID and X-Request-Timestamp.
HEADERS_OK: Final = "ok"


@dataclass(frozen=True, slots=True)
class Case:
    category: str  # mix category (exact, close, …, invalid)
    variant: str  # the defect for invalid requests, else the category
    body: bytes  # the single-check body (for bulk: one item)
    headers: str  # header mode (HEADERS_OK or a defect)
    status: int  # expected HTTP status
    answer: Mapping[str, str] | None  # expected 200 body
    code: str | None  # expected problem code
    label: str  # short description for wrong-answer samples

    def describe(self) -> str:
        if self.answer is not None:
            return " ".join(f"{k}={v!r}" for k, v in self.answer.items())
        return f"{self.status} {self.code}"


def _body(iban: str, name: str | None, party_bic: str, requesting_bic: str, **party: Any) -> dict[str, Any]:
    p: dict[str, Any] = dict(party)
    if name is not None:
        p["name"] = name
    return {
        "party": p,
        "partyAccount": {"iban": iban},
        "partyAgent": {"financialInstitutionId": {"bicfi": party_bic}},
        "requestingAgent": {"financialInstitutionId": {"bicfi": requesting_bic}},
    }


def _expected_answer(probe: Probe) -> dict[str, str]:
    if probe.expected == "CMTC":
        assert probe.expected_matched_name is not None
        return {"partyNameMatch": "CMTC", "matchedName": probe.expected_matched_name}
    return {"partyNameMatch": probe.expected}


def _break_iban(iban: str) -> str:
    """Same IBAN with other check digits: fails mod-97."""
    check = int(iban[2:4])
    return f"{iban[:2]}{(check + 1) % 97 or 2:02d}{iban[4:]}"


# Body defects: (variant, body builder). Each keeps every other field valid.
BodyDefect = Callable[[Probe, str, str], bytes]
BODY_DEFECTS: Final[dict[str, BodyDefect]] = {
    "bad_iban_checksum": lambda p, pb, rb: _encode(_body(_break_iban(p.iban), p.name, pb, rb)),
    "iban_garbage": lambda p, pb, rb: _encode(_body("NOT-AN-IBAN", p.name, pb, rb)),
    "non_latin_name": lambda p, pb, rb: _encode(_body(p.iban, "Иван Петров", pb, rb)),
    "name_too_long": lambda p, pb, rb: _encode(_body(p.iban, "A" * 141, pb, rb)),
    "empty_name": lambda p, pb, rb: _encode(_body(p.iban, "", pb, rb)),
    "no_name_no_id": lambda p, pb, rb: _encode(_body(p.iban, None, pb, rb)),
    "foreign_party_agent": lambda p, pb, rb: _encode(_body(p.iban, p.name, "OTHRDEFFXXX", rb)),
    # partyAgent, not requestingAgent: under auth a requester BIC other than the token's is a 403.
    "bad_bic_shape": lambda p, pb, rb: _encode(_body(p.iban, p.name, "bad-bic", rb)),
    "missing_account": lambda p, pb, rb: _encode(
        {k: v for k, v in _body(p.iban, p.name, pb, rb).items() if k != "partyAccount"}
    ),
}
# Defects only a single request can carry: broken JSON and header errors. (variant, header mode, code)
REQUEST_DEFECTS: Final[tuple[tuple[str, str, str], ...]] = (
    ("malformed_json", HEADERS_OK, "FORMAT_ERROR"),
    ("no_request_id", "no_id", "FORMAT_ERROR"),
    ("bad_request_id", "bad_id", "FORMAT_ERROR"),
    ("no_timestamp", "no_ts", "TIMESTAMP_INVALID"),
    ("bad_timestamp", "bad_ts", "TIMESTAMP_INVALID"),
    ("stale_timestamp", "stale_ts", "TIMESTAMP_INVALID"),
)


def valid_case(probe: Probe, party_bic: str, requesting_bic: str) -> Case:
    return Case(
        category=probe.category,
        variant=probe.category,
        body=_encode(_body(probe.iban, probe.name, party_bic, requesting_bic)),
        headers=HEADERS_OK,
        status=200,
        answer=_expected_answer(probe),
        code=None,
        label=f"{probe.iban} {probe.name!r}",
    )


def invalid_cases(
    probes: Sequence[Probe], count: int, party_bic: str, requesting_bic: str, *, body_only: bool
) -> list[Case]:
    """``count`` invalid requests, cycling through the defects (body defects only for bulk items)."""
    kinds: list[tuple[str, str, str]] = [(v, HEADERS_OK, "FORMAT_ERROR") for v in BODY_DEFECTS]
    if not body_only:
        kinds += REQUEST_DEFECTS
    out: list[Case] = []
    for i in range(count):
        variant, headers, code = kinds[i % len(kinds)]
        probe = probes[i % len(probes)]
        if variant in BODY_DEFECTS:
            body = BODY_DEFECTS[variant](probe, party_bic, requesting_bic)
        elif variant == "malformed_json":
            body = _encode(_body(probe.iban, probe.name, party_bic, requesting_bic))[:-2]
        else:
            body = _encode(_body(probe.iban, probe.name, party_bic, requesting_bic))
        out.append(Case("invalid", variant, body, headers, 400, None, code, f"{variant} {probe.iban}"))
    return out


def split_counts(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``n`` over ``weights``."""
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(weights, key=lambda k: -(exact[k] - counts[k])):
        if sum(counts.values()) >= n:
            break
        counts[k] += 1
    return counts


def cap_names_per_iban(probes: Sequence[Probe], limit: int) -> list[Probe]:
    """Drop probes that would send more than ``limit`` distinct names for one IBAN (0: no cap).

    The responder's name-enumeration guard (VOP_ENUM_MAX_NAMES, default 5 per client and IBAN in
    10 min) answers NOAP beyond its limit, and a load test is one client: the deck must stay under
    it (invalid requests add up to three more fixed names)."""
    if limit <= 0:
        return list(probes)
    names: dict[str, set[str]] = {}
    out: list[Probe] = []
    for probe in probes:
        seen = names.setdefault(probe.iban, set())
        if probe.name in seen or len(seen) < limit:
            seen.add(probe.name)
            out.append(probe)
    return out


def load_table(options: Any) -> pa.Table:
    if options.snapshot:
        return pq.read_table(options.snapshot, columns=["iban", "names", "type", "status"])
    return generate_accounts(options.accounts, seed=options.data_seed)


def build_deck(table: pa.Table, options: Any, *, body_only: bool) -> list[Case]:
    mix = parse_mix(options.mix)
    n = max(100, int(options.probes))
    counts = split_counts(n, mix)
    valid_mix = {k: v for k, v in mix.items() if k != "invalid" and v > 0}
    n_valid = n - counts["invalid"]
    # Invalid requests are built on real probes; draw a few even when the mix has no valid share.
    want = max(n_valid, 50)
    mix_or_exact = valid_mix or {"exact": 1.0}
    base = cap_names_per_iban(
        generate_probes(table, want + want // 2, mix_or_exact, seed=options.data_seed),
        options.max_names_per_iban,
    )
    if len(base) < want:  # a tiny table: fall back to the uncapped draw
        base = generate_probes(table, want, mix_or_exact, seed=options.data_seed)
    base = base[:want]
    deck = [valid_case(p, options.party_bic, options.requesting_bic) for p in base[:n_valid]]
    deck += invalid_cases(
        base, counts["invalid"], options.party_bic, options.requesting_bic, body_only=body_only
    )
    random.Random(options.data_seed).shuffle(deck)
    return deck


@dataclass
class SuiteState:
    """Per-process data and counters (counters travel to the master in worker reports)."""

    key: tuple[Any, ...] | None = None
    deck: list[Case] = field(default_factory=list)
    bulk_deck: list[Case] = field(default_factory=list)
    bulk_sizes: list[int] = field(default_factory=lambda: [100])
    token: str = ""
    wrong: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)
    checks: int = 0  # bulk items sent (and answered)
    data_warning: str = ""  # the target's data differs from the suite's (see data_mismatch)

    def record_wrong(self, category: str, message: str) -> None:
        self.wrong[category] += 1
        bucket = self.samples.setdefault(category, [])
        if len(bucket) < SAMPLES_PER_CATEGORY:
            bucket.append(message)

    def merge(self, wrong: Mapping[str, int], samples: Mapping[str, list[str]], checks: int) -> None:
        self.wrong.update(wrong)
        for category, msgs in samples.items():
            bucket = self.samples.setdefault(category, [])
            bucket.extend(msgs[: max(0, SAMPLES_PER_CATEGORY - len(bucket))])
        self.checks += checks


STATE = SuiteState()

_DATA_OPTIONS: Final = (
    "scenario",
    "mix",
    "snapshot",
    "accounts",
    "data_seed",
    "probes",
    "max_names_per_iban",
    "party_bic",
    "requesting_bic",
)


def prepare(environment: Environment) -> None:
    """Validate the options and build this process's deck (once; again only if they changed)."""
    options = environment.parsed_options
    assert options is not None
    parse_mix(options.mix)
    STATE.bulk_sizes = parse_sizes(options.bulk_size)
    STATE.token = read_token(options)
    if options.scenario == "auth_negative" and not options.auth:
        raise ValueError("--scenario auth_negative needs --auth (a target that enforces JWT auth)")
    if options.auth and options.scenario != "auth_negative" and not STATE.token:
        raise ValueError("--auth needs --token or --token-file (mint one with `vop token`)")
    if options.shape and options.target_rps <= 0:
        raise ValueError(f"--shape {options.shape} needs --target-rps")
    if options.duration:
        parse_duration(options.duration)
    key = tuple(getattr(options, k) for k in _DATA_OPTIONS)
    if key == STATE.key:
        return
    started = time.perf_counter()
    table = load_table(options)
    if options.scenario == "bulk":
        STATE.bulk_deck = build_deck(table, options, body_only=True)
        STATE.deck = []
    else:
        STATE.deck = build_deck(table, options, body_only=False)
        STATE.bulk_deck = []
    STATE.key = key
    size = len(STATE.deck or STATE.bulk_deck)
    source = options.snapshot or f"{options.accounts:,} demo accounts (seed {options.data_seed})"
    log.info(
        "VoP suite: %d requests pre-generated from %s in %.1f s", size, source, time.perf_counter() - started
    )


@events.init.add_listener
def _on_init(environment: Environment, **_kw: Any) -> None:
    options = environment.parsed_options
    if options is None:  # used as a library (tests importing the module)
        return
    try:
        if not isinstance(environment.runner, MasterRunner):
            prepare(environment)
        else:  # the master needs no deck, but refuses bad options before workers start
            parse_mix(options.mix)
            parse_sizes(options.bulk_size)
            if options.shape and options.target_rps <= 0:
                raise ValueError(f"--shape {options.shape} needs --target-rps")
    except (ValueError, OSError) as exc:
        log.error("VoP suite: %s", exc)
        sys.stderr.write(f"locustfile: error: {exc}\n")
        sys.exit(2)
    if not isinstance(environment.runner, WorkerRunner):
        chosen = USER_CLASSES[options.scenario]
        environment.user_classes = [chosen]
        environment.available_user_classes = {chosen.__name__: chosen}


def data_mismatch(environment: Environment) -> str:
    """A warning when the target's ``/readyz`` reports another account count than the suite's
    data (the answers would then differ from the expected ones); "" when they agree or unknown."""
    options = environment.parsed_options
    if options is None or not environment.host:
        return ""
    ours = pq.ParquetFile(options.snapshot).metadata.num_rows if options.snapshot else int(options.accounts)
    try:
        with urllib.request.urlopen(environment.host.rstrip("/") + "/readyz", timeout=3) as r:  # noqa: S310
            theirs = json.loads(r.read()).get("accounts")
    except (OSError, ValueError, AttributeError):
        return ""
    if isinstance(theirs, int) and theirs != ours:
        source = f"--snapshot {options.snapshot}" if options.snapshot else f"--accounts {ours}"
        return (
            f"the target serves {theirs:,} accounts but the suite's data ({source}) has {ours:,}: "
            "give the snapshot it serves (--snapshot) or its demo size (--accounts)"
        )
    return ""


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_kw: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        STATE.data_warning = data_mismatch(environment)
        if STATE.data_warning:
            log.warning("VoP suite: %s", STATE.data_warning)
    # On a worker the master's options arrive with the first spawn: rebuild if they differ.
    if isinstance(environment.runner, WorkerRunner) and environment.parsed_options is not None:
        try:
            prepare(environment)
        except (ValueError, OSError) as exc:
            log.error("VoP suite: options from the master are unusable here: %s", exc)


@events.report_to_master.add_listener
def _report_to_master(client_id: str, data: dict[str, Any]) -> None:
    data["vop_wrong"] = dict(STATE.wrong)
    data["vop_samples"] = STATE.samples
    data["vop_checks"] = STATE.checks
    STATE.wrong = Counter()
    STATE.samples = {}
    STATE.checks = 0


@events.worker_report.add_listener
def _worker_report(client_id: str, data: dict[str, Any]) -> None:
    STATE.merge(data.get("vop_wrong", {}), data.get("vop_samples", {}), int(data.get("vop_checks", 0)))


# --------------------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------------------

_ts_cache: list[Any] = [0, ""]


def now_rfc3339() -> str:
    sec = int(time.time())
    if _ts_cache[0] != sec:
        _ts_cache[0] = sec
        _ts_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))
    return str(_ts_cache[1])


def request_headers(mode: str, token: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if mode != "no_id":
        headers["X-Request-ID"] = "not-a-uuid" if mode == "bad_id" else str(uuid.uuid4())
    if mode == "bad_ts":
        headers["X-Request-Timestamp"] = "2026-13-45 25:61:00"
    elif mode == "stale_ts":
        headers["X-Request-Timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    elif mode != "no_ts":
        headers["X-Request-Timestamp"] = now_rfc3339()
    return headers


@dataclass(frozen=True, slots=True)
class Verdict:
    """How an answer compares with the expected one. ``failure`` is the stats error text (no
    per-request detail: locust groups failures by message); ``detail`` names the probe."""

    ok: bool
    wrong: bool = False  # a 200/400 whose content is not the expected answer
    failure: str = ""
    detail: str = ""


RIGHT: Final = Verdict(ok=True)


def judge(case: Case, status: int, content: bytes) -> Verdict:
    """Compare one single-check answer with the case's expected answer.

    A 200 or 400 with the wrong content is a wrong answer; any other status is an error."""
    if status not in (200, 400):
        return Verdict(False, failure=f"HTTP {status} (expected {case.status})", detail=repr(content[:160]))
    try:
        got = _decode(content)
    except msgspec.DecodeError:
        return Verdict(
            False, failure=f"HTTP {status} with a body that is not JSON", detail=repr(content[:160])
        )
    if case.answer is not None:
        if status == 200 and got == case.answer:
            return RIGHT
        expected = case.answer["partyNameMatch"]
        failure = f"wrong answer [{case.category}]: expected {expected}, got {status} {_code_of(got)}"
        if status == 200 and _code_of(got) == expected:  # right code, wrong matchedName or extra fields
            failure = f"wrong answer [{case.category}]: {expected} with wrong matchedName/fields"
        detail = f"{case.label}: expected {case.describe()}, got {status} {_short(got)}"
        return Verdict(False, wrong=True, failure=failure, detail=detail)
    if status == 400 and isinstance(got, dict) and got.get("code") == case.code:
        return RIGHT
    failure = f"wrong answer [invalid:{case.variant}]: expected 400 {case.code}, got {status} {_code_of(got)}"
    return Verdict(False, wrong=True, failure=failure, detail=f"{case.label}: got {status} {_short(got)}")


def _code_of(got: Any) -> str:
    if isinstance(got, dict):
        return str(got.get("partyNameMatch") or got.get("partyIdMatch") or got.get("code") or "?")
    return "?"


def _short(got: Any) -> str:
    return json.dumps(got, ensure_ascii=False)[:200]


def wrong_category(case: Case) -> str:
    return case.category if case.answer is not None else f"invalid:{case.variant}"


def per_user_rate(options: Any) -> float:
    if options.scenario == "burst":
        return max(1, options.burst_size) / max(0.01, options.burst_pause)
    return max(0.01, float(options.user_rps))


def paced_wait(user: Any) -> float:
    """``constant_throughput(--user-rps)`` (see ``paced``) when a target rate is set (the shapes
    turn the rate into users at that pace), else no wait: a closed loop at full speed."""
    options = user.environment.parsed_options
    if options is None or options.target_rps <= 0:
        return 0.0
    return paced(user, per_user_rate(options))


def paced(user: Any, tasks_per_s: float) -> float:
    """Locust's ``constant_throughput(tasks_per_s)`` (task start to task start = 1/rate, no wait
    once a task overran) with a random first wait, so that users spawned at a steady rate do not
    fall into a few phases and send in bursts."""
    interval = 1.0 / tasks_per_s
    now = time.perf_counter()
    last: tuple[float, float] | None = getattr(user, "_vop_pace", None)  # (interval, task start)
    if last is None or last[0] != interval:
        wait = random.uniform(0, interval)
    else:
        wait = max(0.0, interval - (now - last[1]))
    user._vop_pace = (interval, now + wait)
    return wait


class VopUser(FastHttpUser):
    abstract = True
    network_timeout = 10.0
    connection_timeout = 5.0
    max_retries = 0

    def wait_time(self) -> float:
        return paced_wait(self)

    def on_start(self) -> None:
        self._pos = random.randrange(1 << 30)

    def _token(self) -> str:
        return STATE.token

    def _next(self) -> Case:
        deck = STATE.deck
        self._pos += 1
        return deck[self._pos % len(deck)]

    def verify_one(self, case: Case) -> None:
        headers = request_headers(case.headers, self._token())
        with self.client.post(
            VERIFY_PATH, data=case.body, headers=headers, name=f"verify {case.category}", catch_response=True
        ) as resp:
            verdict = judge(case, resp.status_code, resp.content or b"")
            if verdict.ok:
                sent = headers.get("X-Request-ID")
                if case.status == 200 and sent and resp.headers.get("X-Request-ID") != sent:
                    resp.failure("X-Request-ID not echoed")
                else:
                    resp.success()
                return
            if verdict.wrong:
                STATE.record_wrong(wrong_category(case), verdict.detail)
            resp.failure(verdict.failure)


class SingleMixUser(VopUser):
    """One single check per task, from the mixed deck."""

    @task
    def single(self) -> None:
        self.verify_one(self._next())


class BurstUser(VopUser):
    """``--burst-size`` single checks in flight at once, then a pause (``--burst-pause``)."""

    def __init__(self, environment: Environment) -> None:
        options = environment.parsed_options
        self.concurrency = max(1, options.burst_size if options is not None else 50)
        super().__init__(environment)

    def wait_time(self) -> float:
        # One burst per --burst-pause s; a target rate sets the number of users (per_user_rate).
        options = self.environment.parsed_options
        pause = max(0.01, options.burst_pause if options is not None else 1.0)
        return paced(self, 1.0 / pause)

    @task
    def burst(self) -> None:
        size = self.concurrency
        pool = Pool(size)
        for _ in range(size):
            pool.spawn(self.verify_one, self._next())
        pool.join(timeout=self.network_timeout + 1)


class BulkUser(VopUser):
    """``POST …/bulk`` with ``--bulk-size`` items; each item's answer is checked in order."""

    def _items(self, size: int) -> list[Case]:
        deck = STATE.bulk_deck
        start = random.randrange(len(deck))
        if start + size <= len(deck):
            return deck[start : start + size]
        return [deck[(start + i) % len(deck)] for i in range(size)]

    @task
    def bulk(self) -> None:
        size = random.choice(STATE.bulk_sizes)
        items = self._items(size)
        body = b'{"checks":[' + b",".join(c.body for c in items) + b"]}"
        with self.client.post(
            BULK_PATH,
            data=body,
            headers=request_headers(HEADERS_OK, self._token()),
            name=f"bulk {size}",
            catch_response=True,
        ) as resp:
            status = resp.status_code
            content = resp.content or b""
            if status != 200:
                resp.failure(f"HTTP {status} (expected 200)")
                return
            try:
                results = _decode(content).get("results")
            except (msgspec.DecodeError, AttributeError):
                resp.failure("bulk answer is not a JSON object")
                return
            if not isinstance(results, list) or len(results) != len(items):
                got = len(results) if isinstance(results, list) else type(results).__name__
                resp.failure(f"bulk answer has {got} results for {len(items)} checks")
                return
            STATE.checks += len(items)
            wrong = 0
            first = ""
            for i, (case, got) in enumerate(zip(items, results, strict=True)):
                if case.answer is not None:
                    ok = got == case.answer
                else:
                    err = got.get("error") if isinstance(got, dict) else None
                    ok = isinstance(err, dict) and err.get("code") == case.code
                if not ok:
                    wrong += 1
                    category = wrong_category(case)
                    msg = f"item {i} {case.label}: expected {case.describe()}, got {_short(got)}"
                    STATE.record_wrong(category, msg)
                    first = first or category
            if wrong:
                resp.failure(f"bulk: wrong answers in the results (first: {first})")
            else:
                resp.success()


@dataclass(frozen=True, slots=True)
class AuthCase:
    name: str
    authorization: str | None  # the Authorization header; None: not sent
    requesting_bic: str | None = None  # override the body's requestingAgent (token/BIC mismatch)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def auth_cases(token: str, requesting_bic: str) -> list[AuthCase]:
    far = int(time.time()) + 86_400
    forged_claims = {"sub": requesting_bic, "bic": requesting_bic, "scope": "vop:verify vop:bulk", "exp": far}
    payload = _b64(_encode(forged_claims))
    none_header = _b64(b'{"alg":"none","typ":"JWT"}')
    hs256_header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    cases = [
        AuthCase("missing", None),
        AuthCase("empty bearer", "Bearer "),
        AuthCase("not bearer", "Basic dXNlcjpwYXNz"),
        AuthCase("garbage", "Bearer not.a.jwt"),
        AuthCase("alg none", f"Bearer {none_header}.{payload}."),
        AuthCase("forged hs256", f"Bearer {hs256_header}.{payload}.{_b64(b'x' * 32)}"),
    ]
    parts = token.split(".")
    if len(parts) == 3:
        sig = parts[2]
        flipped = ("A" if sig[:1] != "A" else "B") + sig[1:]
        cases.append(AuthCase("tampered signature", f"Bearer {parts[0]}.{parts[1]}.{flipped}"))
        cases.append(AuthCase("alg none from token", f"Bearer {none_header}.{parts[1]}."))
        other = "OTHRDEFFXXX" if requesting_bic != "OTHRDEFFXXX" else "ZZZZDEFFXXX"
        cases.append(AuthCase("token for another BIC", f"Bearer {token}", requesting_bic=other))
    return cases


class AuthNegativeUser(VopUser):
    """Requests with bad or missing credentials: each must get 401/403 with CLIENT_INVALID or
    CLIENT_INCONSISTENT. A 200 is a wrong answer (an unauthenticated check was answered)."""

    def on_start(self) -> None:
        super().on_start()
        options = self.environment.parsed_options
        requesting = options.requesting_bic if options is not None else REQUESTING_BIC
        self._cases = auth_cases(STATE.token, requesting)
        self._party = options.party_bic if options is not None else DEMO_BIC

    @task
    def negative(self) -> None:
        self._pos += 1
        auth = self._cases[self._pos % len(self._cases)]
        probe = self._next_probe()
        requesting = auth.requesting_bic or REQUESTING_BIC
        body = _encode(_body(probe.iban, probe.name, self._party, requesting))
        headers = request_headers(HEADERS_OK, "")
        if auth.authorization is not None:
            headers["Authorization"] = auth.authorization
        with self.client.post(
            VERIFY_PATH, data=body, headers=headers, name=f"auth {auth.name}", catch_response=True
        ) as resp:
            status = resp.status_code
            code: Any = None
            try:
                decoded = _decode(resp.content or b"{}")
                code = decoded.get("code") if isinstance(decoded, dict) else None
            except msgspec.DecodeError:
                pass
            if status in (401, 403) and code in ("CLIENT_INVALID", "CLIENT_INCONSISTENT"):
                resp.success()
                return
            message = f"auth [{auth.name}]: expected 401/403 CLIENT_INVALID/INCONSISTENT, got {status} {code}"
            if status < 500:
                STATE.record_wrong(f"auth:{auth.name}", message)
            resp.failure(message)

    def _next_probe(self) -> _ProbeLike:
        case = STATE.deck[self._pos % len(STATE.deck)]
        return _ProbeLike.from_case(case)


@dataclass(frozen=True, slots=True)
class _ProbeLike:
    iban: str
    name: str

    @staticmethod
    def from_case(case: Case) -> _ProbeLike:
        body = _decode(case.body) if case.category != "invalid" else {}
        if not body:
            return _ProbeLike("DE89370400440532013000", "Max Mustermann")
        return _ProbeLike(body["partyAccount"]["iban"], body["party"].get("name", "Max Mustermann"))


USER_CLASSES: Final[dict[str, type[VopUser]]] = {
    "single_mix": SingleMixUser,
    "bulk": BulkUser,
    "auth_negative": AuthNegativeUser,
    "burst": BurstUser,
}


# --------------------------------------------------------------------------------------------------
# Load shape: one class, dispatching on --shape
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """A shape as a function of time: ``rate(t)`` requests/s for ``0 <= t < duration``; the gate
    compares the achieved rate with the target over ``window`` (where the plan is at target)."""

    shape: str
    target: float
    duration: float
    ramp: float
    steps: int
    spike_base: float
    window: tuple[float, float]

    def rate(self, t: float) -> float:
        if self.shape in ("ramp", "soak"):
            return self.target * min(1.0, (t + 1.0) / self.ramp) if self.ramp > 0 else self.target
        if self.shape == "steps":
            step = min(self.steps, int(t / (self.duration / self.steps)) + 1)
            return self.target * step / self.steps
        if self.shape == "spike":
            lo, hi = self.window
            return self.target if lo <= t < hi else self.target * self.spike_base
        return self.target  # constant: the users spawn over `ramp`


def make_plan(options: Any) -> Plan | None:
    """The plan for the options, or None when -u/-r/-t drive the run."""
    shape = options.shape or ("constant" if options.target_rps > 0 else None)
    if shape is None:
        return None
    target = float(options.target_rps)
    if options.duration:
        duration = parse_duration(options.duration)
    elif options.run_time:
        duration = float(options.run_time)
    else:
        duration = 1800.0 if shape == "soak" else 60.0
    default_ramp = {
        "constant": min(5.0, duration / 4),
        "ramp": duration / 2,
        "soak": min(60.0, duration / 10),
    }
    ramp = options.ramp_s if options.ramp_s >= 0 else default_ramp.get(shape, 0.0)
    ramp = min(ramp, duration)
    steps = max(1, int(options.steps))
    if shape == "steps":
        window = (duration * (steps - 1) / steps, duration)
    elif shape == "spike":
        length = max(5.0, duration * 0.2)
        start = max(0.0, duration * 0.4)
        window = (start, min(duration, start + length))
    else:
        window = (ramp, duration)
    return Plan(shape, target, duration, ramp, steps, options.spike_base, window)


class VopShape(LoadTestShape):
    """``--shape ramp|steps|spike|soak|constant`` at ``--target-rps`` for ``--duration``; users =
    rate / rate per user. Without ``--shape`` (and ``--target-rps``) it hands over to -u/-r/-t."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self.wall_start = time.time()

    def reset_time(self) -> None:
        super().reset_time()
        self.wall_start = time.time()
        SHAPE_RUN["start"] = self.wall_start

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        assert runner is not None
        options = runner.environment.parsed_options
        assert options is not None
        plan = make_plan(options)
        t = self.get_run_time()
        if plan is None:  # -u/-r/-t (locust's own -t timer is not armed while a shape runs)
            if options.run_time and t >= options.run_time:
                return None
            return int(options.num_users or 1), float(options.spawn_rate or 1)
        if t >= plan.duration:
            return None
        users = max(1, math.ceil(plan.rate(t) / per_user_rate(options) - 1e-9))
        if plan.shape == "constant":
            spawn_rate = users / plan.ramp if plan.ramp > 0 else float(users)
        else:  # reach each second's rate within about a second (start() blocks until spawned)
            spawn_rate = float(max(users, 1))
        return users, max(1.0, spawn_rate)


SHAPE_RUN: dict[str, float] = {}


# --------------------------------------------------------------------------------------------------
# SLO gate and summary
# --------------------------------------------------------------------------------------------------


def achieved_rate(stats: Any, options: Any) -> tuple[float, float, str]:
    """(achieved, target, where) — the request rate over the plan's at-target window."""
    plan = make_plan(options)
    total = stats.total
    if plan is None or plan.target <= 0:
        return 0.0, 0.0, ""
    start = SHAPE_RUN.get("start", total.start_time)
    last = total.last_request_timestamp or time.time()
    lo = int(start + plan.window[0]) + 2  # skip the second the rate is reached and a settle second
    hi = int(min(start + plan.window[1], last))  # the last whole second
    per_sec = total.num_reqs_per_sec
    if hi - lo >= 1:
        seconds = range(lo, hi)
        return (
            sum(per_sec.get(s, 0) for s in seconds) / len(seconds),
            plan.target,
            f"{len(seconds)} s at target",
        )
    return float(total.total_rps), plan.target, "whole run (window too short)"


def gate(environment: Environment) -> dict[str, Any]:
    options = environment.parsed_options
    assert options is not None
    stats = environment.stats
    total = stats.total
    n = total.num_requests
    failures = total.num_failures

    def p(q: float) -> float:  # locust rounds to 10 ms above 100 ms: never report above the max
        return float(min(total.get_response_time_percentile(q), total.max_response_time))

    error_ratio = failures / n if n else 0.0
    achieved, target, where = achieved_rate(stats, options)
    reasons: list[str] = []
    p99 = p(0.99) if n else 0.0
    if n == 0:
        reasons.append("no requests were made")
    if n and p99 > options.slo_p99_ms:
        reasons.append(f"p99 {p99:.0f} ms > {options.slo_p99_ms:g} ms")
    if n and error_ratio > options.slo_error_ratio:
        reasons.append(f"error ratio {error_ratio:.4%} > {options.slo_error_ratio:.4%}")
    wrong_total = sum(STATE.wrong.values())
    if wrong_total:
        reasons.append(f"{wrong_total} wrong answer(s)")
    if target > 0 and achieved < options.slo_rate_ratio * target:
        reasons.append(
            f"achieved {achieved:,.0f} req/s < {options.slo_rate_ratio:.0%} of target {target:,.0f}"
        )
    elapsed = max(1e-9, (total.last_request_timestamp or time.time()) - total.start_time) if n else 0.0
    errors = sorted(stats.errors.values(), key=lambda e: -e.occurrences)
    return {
        "scenario": options.scenario,
        "shape": options.shape or ("constant" if options.target_rps > 0 else None),
        "host": environment.host,
        "requests": n,
        "failures": failures,
        "error_ratio": error_ratio,
        "duration_s": elapsed,
        "rps": n / elapsed if elapsed else 0.0,
        "checks": STATE.checks if options.scenario == "bulk" else n,
        "checks_per_s": (STATE.checks / elapsed if elapsed else 0.0) if options.scenario == "bulk" else None,
        "target_rps": target or None,
        "achieved_rps": achieved if target else None,
        "achieved_over": where or None,
        "latency_ms": {
            "p50": p(0.50) if n else None,
            "p95": p(0.95) if n else None,
            "p99": p99 if n else None,
            "max": total.max_response_time if n else None,
            "avg": total.avg_response_time if n else None,
        },
        "per_name": {
            e.name: {
                "requests": e.num_requests,
                "failures": e.num_failures,
                "p99_ms": e.get_response_time_percentile(0.99),
            }
            for e in stats.entries.values()
        },
        "top_errors": [{"name": e.name, "error": str(e.error), "count": e.occurrences} for e in errors[:5]],
        "wrong_answers": dict(STATE.wrong),
        "wrong_samples": STATE.samples,
        "slo": {
            "p99_ms": options.slo_p99_ms,
            "error_ratio": options.slo_error_ratio,
            "rate_ratio": options.slo_rate_ratio,
        },
        "data_warning": STATE.data_warning or None,
        "passed": not reasons,
        "reasons": reasons,
    }


def render(summary: Mapping[str, Any]) -> str:
    lat = summary["latency_ms"]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"

    lines = [
        "=" * 78,
        f"VoP load test: scenario {summary['scenario']}, shape {summary['shape'] or '-u/-r/-t'}, "
        f"target {summary['host']}",
        f"requests {summary['requests']:,} in {summary['duration_s']:.1f} s = {summary['rps']:,.0f} req/s"
        + (
            f"; {summary['checks']:,} checks = {summary['checks_per_s']:,.0f} checks/s"
            if summary["checks_per_s"] is not None
            else ""
        ),
    ]
    if summary["target_rps"]:
        lines.append(
            f"rate: achieved {summary['achieved_rps']:,.0f} req/s of target {summary['target_rps']:,.0f} "
            f"({summary['achieved_over']})"
        )
    lines += [
        f"latency ms: p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  max {ms(lat['max'])}"
        f"   (SLO p99 <= {summary['slo']['p99_ms']:g})",
        f"failures {summary['failures']:,} ({summary['error_ratio']:.3%}; "
        f"SLO <= {summary['slo']['error_ratio']:.3%})",
    ]
    for e in summary["top_errors"][:3]:
        lines.append(f"  {e['count']:>8,}  {e['name']}: {e['error'][:100]}")
    wrong = summary["wrong_answers"]
    if wrong:
        lines.append(f"wrong answers {sum(wrong.values()):,}:")
        ranked = sorted(wrong.items(), key=lambda kv: -kv[1])
        for category, count in ranked[:6]:
            sample = (summary["wrong_samples"].get(category) or [""])[0]
            lines.append(f"  {count:>8,}  {category}  e.g. {sample[:120]}")
        if len(ranked) > 6:
            rest = sum(c for _, c in ranked[6:])
            lines.append(f"  {rest:>8,}  in {len(ranked) - 6} more categories (see --summary-json)")
    else:
        lines.append("wrong answers 0")
    if summary["data_warning"]:
        lines.append(f"WARNING: {summary['data_warning']}")
    verdict = "PASS" if summary["passed"] else "FAIL: " + "; ".join(summary["reasons"])
    lines += [f"verdict: {verdict}", "=" * 78]
    return "\n".join(lines)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_kw: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    summary = gate(environment)
    text = render(summary)
    print("\n" + text, flush=True)
    if environment.parsed_options.summary_json:
        out = Path(environment.parsed_options.summary_json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**summary, "text": text}, indent=2, ensure_ascii=False), encoding="utf-8")
    environment.process_exit_code = 0 if summary["passed"] else 1
