"""The embedded demo index: generated once into the data dir, then served like any snapshot."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pyarrow.parquet as pq

from app.progress import Progress
from app.settings import Settings
from bench.datagen import DEMO_SEED, demo_example, generate_accounts
from matching.sources.parquet import write_snapshot


def demo_snapshot_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / f"demo-{settings.demo_accounts}-{DEMO_SEED}.parquet"


def write_demo_snapshot(accounts: int, out: Path, seed: int = DEMO_SEED) -> None:
    with Progress(accounts, "demo-data") as bar:
        table = generate_accounts(accounts, seed=seed, progress=bar.update)
        bar.update(accounts)
    write_snapshot(table, out)


def ensure_demo_snapshot(settings: Settings) -> Path:
    path = demo_snapshot_path(settings)
    if not path.is_file():
        write_demo_snapshot(settings.demo_accounts, path)
    return path


def curl_example(snapshot: Path, settings: Settings, token: str | None = None) -> str:
    """A ready-to-paste curl that verifies an active demo account (answer: MTCH)."""
    iban, name = demo_example(pq.read_table(snapshot, columns=["iban", "names", "type", "status"]))
    body = {
        "party": {"name": name},
        "partyAccount": {"iban": iban},
        "partyAgent": {"financialInstitutionId": {"bicfi": settings.psp_bics[0]}},
        "requestingAgent": {"financialInstitutionId": {"bicfi": "REQBDEFFXXX"}},
    }
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    return (
        f"curl -s -X POST http://{host}:{settings.port}/vop/v1/payee-verifications \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        + (f"  -H 'Authorization: Bearer {token}' \\\n" if token else "")
        + "  -H \"X-Request-ID: $(python3 -c 'import uuid; print(uuid.uuid4())')\" \\\n"
        '  -H "X-Request-Timestamp: $(date -u +%Y-%m-%dT%H:%M:%SZ)" \\\n'
        f"  -d {shlex.quote(json.dumps(body, ensure_ascii=False))}"
    )
