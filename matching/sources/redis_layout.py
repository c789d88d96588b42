"""The Redis data contract (DESIGN.md §3): key names, hash encoding, and the writer side.

Layout, with ``prefix`` (default ``vop:``):

- ``<prefix>acct:<IBAN>`` — HASH: ``names`` (JSON array of strings), ``type``, ``status``, optional
  ``lei``, optional ``any_bic``, optional ``org_ids`` (JSON array of ``"SCHEME:VALUE"``).
- ``<prefix>changes`` — STREAM; each entry ``op`` = ``upsert`` | ``delete``, ``iban`` = the account.

Every writer here changes the hash and appends the stream entry inside one ``MULTI``/``EXEC``, so
the stream is a complete change log of the hashes. The bulk loader groups many accounts into one
transaction (hashes + their stream entries together); that keeps the log complete too.

Decoding is strict and total: a hash that breaks the contract raises :class:`HashDecodeError`
(the reader skips that account and counts it), so a bad record can never make an index build
fail. Error messages name the field, never the data (no personal data in logs).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from matching.index import STATUSES, TYPES
from matching.sources.parquet import SNAPSHOT_SCHEMA, read_snapshot

DEFAULT_PREFIX: Final = "vop:"
#: Hash fields in the order the reader asks for them (HMGET).
FIELDS: Final = ("names", "type", "status", "lei", "any_bic", "org_ids")
FIELDS_B: Final = tuple(f.encode() for f in FIELDS)
OP_UPSERT: Final = "upsert"
OP_DELETE: Final = "delete"
#: Widest IBAN (ISO 13616) — the index keys are fixed-width bytes of at most this size.
MAX_IBAN_LENGTH: Final = 34
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}")
_TYPES_B = frozenset(t.encode() for t in TYPES)
_STATUSES_B = frozenset(s.encode() for s in STATUSES)

#: One account as a plain dict with the snapshot table's columns.
AccountRow = dict[str, Any]


class HashDecodeError(ValueError):
    """An account hash in Redis breaks the data contract; the message names the field only."""


class HashEncodeError(ValueError):
    """A row cannot be written: it breaks the data contract."""


# ---- keys ----------------------------------------------------------------------------------
def account_key(prefix: str, iban: str) -> str:
    return f"{prefix}acct:{iban}"


def account_key_prefix(prefix: str) -> str:
    return f"{prefix}acct:"


def changes_key(prefix: str) -> str:
    return f"{prefix}changes"


def valid_iban_key(iban: str) -> bool:
    """IBAN shape check for keys (format only; mod-97 is the request validator's job)."""
    return len(iban) <= MAX_IBAN_LENGTH and _IBAN_SHAPE.fullmatch(iban) is not None


# ---- encode --------------------------------------------------------------------------------
def encode_account(row: Mapping[str, Any]) -> dict[str, bytes]:
    """The hash fields of one account row (dict with the snapshot columns)."""
    iban = row.get("iban")
    if not isinstance(iban, str) or not valid_iban_key(iban):
        raise HashEncodeError("iban is missing or not IBAN-shaped")
    names = row.get("names")
    if (
        not isinstance(names, list | tuple)
        or not names
        or not all(isinstance(n, str) and n.strip() for n in names)
    ):
        raise HashEncodeError("names must be a non-empty list of non-blank strings")
    typ, status = row.get("type"), row.get("status")
    if typ not in TYPES:
        raise HashEncodeError(f"type must be one of {', '.join(TYPES)}")
    if status not in STATUSES:
        raise HashEncodeError(f"status must be one of {', '.join(STATUSES)}")
    out: dict[str, bytes] = {
        "names": orjson.dumps(list(names)),
        "type": typ.encode(),
        "status": status.encode(),
    }
    for field in ("lei", "any_bic"):
        value = row.get(field)
        if value:
            if not isinstance(value, str):
                raise HashEncodeError(f"{field} must be a string")
            out[field] = value.encode()
    org_ids = row.get("org_ids")
    if org_ids:
        if not isinstance(org_ids, list | tuple) or not all(isinstance(o, str) for o in org_ids):
            raise HashEncodeError("org_ids must be a list of strings")
        out["org_ids"] = orjson.dumps(list(org_ids))
    return out


# ---- decode --------------------------------------------------------------------------------
def _str_list(raw: bytes, field: str, *, non_empty: bool) -> list[str]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HashDecodeError(f"{field} is not valid JSON") from None
    if not isinstance(value, list) or (non_empty and not value):
        raise HashDecodeError(f"{field} must be a{' non-empty' if non_empty else ''} JSON array")
    for item in value:
        if not isinstance(item, str) or (non_empty and not item.strip()):
            raise HashDecodeError(f"{field} must hold non-blank strings")
    return value


def _opt_str(raw: bytes | None, field: str) -> str | None:
    if raw is None or raw == b"":
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise HashDecodeError(f"{field} is not UTF-8") from None


def decode_values(iban: str, values: Sequence[bytes | None]) -> AccountRow | None:
    """Row dict from the HMGET reply (fields in :data:`FIELDS` order); None when the hash is absent.

    Raises HashDecodeError when the hash exists but breaks the contract.
    """
    names_b, type_b, status_b, lei_b, bic_b, org_b = values
    if names_b is None and type_b is None and status_b is None:
        if lei_b is None and bic_b is None and org_b is None:
            return None
        raise HashDecodeError("hash lacks names, type and status")
    if not valid_iban_key(iban):
        raise HashDecodeError("key does not end in an IBAN-shaped string")
    if names_b is None:
        raise HashDecodeError("names is missing")
    if type_b not in _TYPES_B:
        raise HashDecodeError("type is missing or invalid")
    if status_b not in _STATUSES_B:
        raise HashDecodeError("status is missing or invalid")
    assert type_b is not None
    assert status_b is not None
    return {
        "iban": iban,
        "names": _str_list(names_b, "names", non_empty=True),
        "type": type_b.decode(),
        "status": status_b.decode(),
        "lei": _opt_str(lei_b, "lei"),
        "any_bic": _opt_str(bic_b, "any_bic"),
        "org_ids": [] if not org_b else _str_list(org_b, "org_ids", non_empty=False),
    }


def decode_hash(iban: str, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> AccountRow | None:
    """Row dict from an HGETALL reply (bytes or str keys); None for an empty reply."""
    get: dict[bytes, bytes] = {
        (k.encode() if isinstance(k, str) else k): (v.encode() if isinstance(v, str) else v)
        for k, v in fields.items()
    }
    return decode_values(iban, [get.get(f) for f in FIELDS_B])


def rows_to_table(rows: Sequence[AccountRow]) -> pa.Table:
    """Snapshot table (DESIGN.md §3 columns) from decoded rows."""
    return pa.Table.from_pylist(list(rows), schema=SNAPSHOT_SCHEMA)


# ---- writer side ---------------------------------------------------------------------------
def _iter_rows(table: pa.Table, batch: int) -> Iterator[list[AccountRow]]:
    present = [c for c in SNAPSHOT_SCHEMA.names if c in table.column_names]
    for rb in table.select(present).to_batches(max_chunksize=batch):
        cols = {name: rb.column(name).to_pylist() for name in present}
        yield [{name: cols[name][i] for name in present} for i in range(rb.num_rows)]


def write_accounts(
    client: redis.Redis,
    table: pa.Table,
    prefix: str = DEFAULT_PREFIX,
    *,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> str | None:
    """Bulk-write every row of ``table`` as an upsert: per ``batch`` accounts one MULTI/EXEC with
    each account's ``DEL`` + ``HSET`` and its ``XADD``. Returns the last stream id written.

    The whole table is checked before anything is written (HashEncodeError, nothing written).
    ``client`` should carry socket timeouts (see :func:`connect`).
    """
    validate_table(table)
    stream = changes_key(prefix)
    last_id: str | None = None
    done = 0
    for rows in _iter_rows(table, batch):
        pipe = client.pipeline(transaction=True)
        for row in rows:
            key = account_key(prefix, row["iban"])
            pipe.delete(key)
            pipe.hset(key, mapping=encode_account(row))  # type: ignore[arg-type]
            pipe.xadd(stream, {"op": OP_UPSERT, "iban": row["iban"]})
        replies = pipe.execute()
        last_id = _id_str(replies[-1])
        done += len(rows)
        if progress is not None:
            progress(done)
    return last_id


def upsert_account(client: redis.Redis, row: Mapping[str, Any], prefix: str = DEFAULT_PREFIX) -> str:
    """Create or replace one account: DEL + HSET + XADD in one MULTI/EXEC. Returns the stream id."""
    fields = encode_account(row)
    key = account_key(prefix, row["iban"])
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
    pipe.xadd(changes_key(prefix), {"op": OP_UPSERT, "iban": row["iban"]})
    return _id_str(pipe.execute()[-1])


def delete_account(client: redis.Redis, iban: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Remove one account: DEL + XADD in one MULTI/EXEC. Returns the stream id."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(account_key(prefix, iban))
    pipe.xadd(changes_key(prefix), {"op": OP_DELETE, "iban": iban})
    return _id_str(pipe.execute()[-1])


def validate_table(table: pa.Table) -> None:
    """Vectorised contract check of a table about to be written (raises HashEncodeError)."""
    for col in ("iban", "names", "type", "status"):
        if col not in table.column_names:
            raise HashEncodeError(f"table lacks column {col}")
    n = table.num_rows
    if n == 0:
        return
    iban = table.column("iban")
    shaped = pc.match_substring_regex(iban, r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}$")
    bad_iban = pc.invert(pc.fill_null(shaped, False))
    checks = {
        "iban is missing or not IBAN-shaped": bad_iban,
        "type is invalid": pc.invert(pc.fill_null(pc.is_in(table.column("type"), pa.array(TYPES)), False)),
        "status is invalid": pc.invert(
            pc.fill_null(pc.is_in(table.column("status"), pa.array(STATUSES)), False)
        ),
        "names list is missing or empty": pc.fill_null(
            pc.less_equal(pc.list_value_length(table.column("names")), 0), True
        ),
    }
    for what, mask in checks.items():
        count = pc.sum(mask).as_py() or 0
        if count:
            raise HashEncodeError(f"{count} rows: {what}")
    flat = pc.list_flatten(table.column("names"))
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(flat)), 0), True)
    count = pc.sum(blank).as_py() or 0
    if count:
        raise HashEncodeError(f"{count} registered names are null or blank")
    if pc.count_distinct(iban).as_py() != n:
        raise HashEncodeError("duplicate IBANs in table")


def _id_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---- connections and the operator command --------------------------------------------------
SENTINEL_SCHEME = "redis+sentinel://"


def connect(
    url: str,
    *,
    socket_timeout: float = 30.0,
    connect_timeout: float = 5.0,
) -> redis.Redis:
    """A client with timeouts on every call and no hidden retries (callers decide on retrying).

    ``redis://`` / ``rediss://`` / ``unix://`` connect directly; ``redis+sentinel://[:password@]
    host:port[,host:port…]/<service>[/<db>]`` asks the Sentinels for the current primary of
    ``service`` (and again after a failover, on reconnect)."""
    if url.startswith(SENTINEL_SCHEME):
        return _sentinel_primary(url, socket_timeout, connect_timeout)
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        decode_responses=False,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
    )
    return client


class LoadSummary(msgspec.Struct, frozen=True):
    """What ``vop redis load`` did."""

    accounts: int
    seconds: float
    prefix: str
    last_stream_id: str | None
    stream_length: int


def load_snapshot_into_redis(
    url: str,
    path: str | os.PathLike[str],
    prefix: str = DEFAULT_PREFIX,
    progress: Callable[[int], None] | None = None,
    *,
    batch: int = 1000,
) -> LoadSummary:
    """Write every account of the Parquet snapshot at ``path`` into Redis as upserts (hash + stream
    entry). ``progress`` gets the number of accounts written so far. Raises IndexBuildError
    (unreadable file) or HashEncodeError (bad rows, nothing written)."""
    started = time.perf_counter()
    table = read_snapshot(path)
    client = connect(url)
    try:
        last_id = write_accounts(client, table, prefix, batch=batch, progress=progress)
        length = int(client.xlen(changes_key(prefix)))
    finally:
        client.close()
    return LoadSummary(
        accounts=table.num_rows,
        seconds=time.perf_counter() - started,
        prefix=prefix,
        last_stream_id=last_id,
        stream_length=length,
    )


def _sentinel_primary(url: str, socket_timeout: float, connect_timeout: float) -> redis.Redis:
    rest = url[len(SENTINEL_SCHEME) :]
    auth, _, rest = rest.rpartition("@")
    hosts_part, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    if not hosts_part or not service:
        raise ValueError("sentinel URL must be redis+sentinel://host:port[,host:port...]/service[/db]")
    hosts: list[tuple[str, int]] = []
    for item in hosts_part.split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if host and port else 26379))
    password = unquote(auth.partition(":")[2]) if auth else None
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        sentinel_kwargs={"socket_timeout": connect_timeout, "password": password},
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        service,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        password=password,
        db=int(db) if db else 0,
        decode_responses=False,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
    )
    return client
