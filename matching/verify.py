"""verify(batch): the one entry point that answers checks against an index.

A lone request is a batch of one. Lookups are one vectorised search for the whole batch, the
name checks of the batch go to the policy together, identifier checks compare normalised ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, cast

from matching.index import Registered
from matching.model import Check, Code, Outcome
from matching.overlay import IndexLike
from matching.policy import DEFAULT_SETTINGS, MatchSettings, NameDecision, decide_names

_ID_JUNK = re.compile(r"[\s.\-/]")


def verify(
    index: IndexLike, checks: Sequence[Check], settings: MatchSettings = DEFAULT_SETTINGS
) -> list[Outcome]:
    if not checks:
        return []
    if len(checks) == 1:  # the lone inter-PSP request: same rules, no batch bookkeeping
        check = checks[0]
        row = index.lookup_rows([check.iban])[0]
        if row < 0:
            return [_unknown(check)]
        acct = index.registered([row])[0]
        settled = _settle(index, row, acct, check)
        if settled is not None:
            return [settled]
        decision = decide_names([check.name or ""], [acct.type], [acct.names], [acct.prepared], settings)[0]
        return [_name_outcome(acct, decision)]

    rows = index.lookup_rows([c.iban for c in checks])
    results: list[Outcome | None] = [None] * len(checks)
    known = [i for i, r in enumerate(rows) if r >= 0]
    name_items: list[int] = []
    name_accounts: list[Registered] = []
    for i, acct in zip(known, index.registered([rows[i] for i in known]), strict=True):
        check = checks[i]
        if acct.status == "active" and not check.is_id_check:  # the name policy decides
            name_items.append(i)
            name_accounts.append(acct)
        else:
            results[i] = _settle(index, rows[i], acct, check)
    if name_items:
        decisions = decide_names(
            [checks[i].name or "" for i in name_items],
            [a.type for a in name_accounts],
            [a.names for a in name_accounts],
            [a.prepared for a in name_accounts],
            settings,
        )
        for i, acct, d in zip(name_items, name_accounts, decisions, strict=True):
            results[i] = _name_outcome(acct, d)
    return [r if r is not None else _unknown(c) for r, c in zip(results, checks, strict=True)]


_UNKNOWN = {kind: Outcome(kind, "NOAP", "account_unknown") for kind in ("name", "id")}


def _unknown(check: Check) -> Outcome:
    """The answer for an IBAN the index does not hold."""
    return _UNKNOWN["id" if check.is_id_check else "name"]


def _settle(index: IndexLike, row: int, acct: Registered, check: Check) -> Outcome | None:
    """The answer for a held account decided without the name policy (inactive account,
    identifier check), or None when the name policy must decide."""
    kind: Literal["name", "id"] = "id" if check.is_id_check else "name"
    if acct.status != "active":
        return Outcome(kind, "NOAP", f"account_{acct.status}")
    if kind == "id":
        return _verify_ids(index, row, check)
    return None


def _name_outcome(acct: Registered, d: NameDecision) -> Outcome:
    if d.code == "CMTC":
        return Outcome("name", "CMTC", d.reason, acct.names[d.matched])
    fixed = _NAME_OUTCOMES.get((d.code, d.reason))
    if fixed is None:  # (frozen Structs: one per code and reason, shared)
        fixed = _NAME_OUTCOMES[(d.code, d.reason)] = Outcome("name", cast(Code, d.code), d.reason)
    return fixed


_NAME_OUTCOMES: dict[tuple[str, str], Outcome] = {}


def _norm_id(value: str) -> str:
    return _ID_JUNK.sub("", value).upper()


def _norm_bic(value: str) -> str:
    v = _norm_id(value)
    return v + "XXX" if len(v) == 8 else v


def _verify_ids(index: IndexLike, row: int, check: Check) -> Outcome:
    """MTCH if every identifier given that we hold matches, NMTC if one contradicts, else NOAP."""
    lei, bic, others = index.identifiers(row)
    on_record: dict[str, set[str]] = {}
    for entry in others:
        scheme, _, value = entry.partition(":")
        on_record.setdefault(scheme.upper(), set()).add(_norm_id(value))
    verdicts: list[bool] = []
    if check.lei is not None and lei:
        verdicts.append(_norm_id(check.lei) == _norm_id(lei))
    if check.any_bic is not None and bic:
        verdicts.append(_norm_bic(check.any_bic) == _norm_bic(bic))
    for scheme, value in check.others:
        held = on_record.get(scheme.upper())
        if held:
            verdicts.append(_norm_id(value) in held)
    if not verdicts:
        return Outcome("id", "NOAP", "id_not_on_record")
    if not all(verdicts):
        return Outcome("id", "NMTC", "id_differs")
    return Outcome("id", "MTCH", "id_equal")
