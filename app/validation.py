"""Edge validation the wire schema cannot express: headers, IBAN, BIC, LEI, Latin-script names.

Each check raises ``ProblemError`` with the scheme code and a one-line detail naming the field.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from app.problems import ProblemError
from app.wire import VerificationRequest
from matching.iban import iban_problem, iso7064_mod97, valid_many
from matching.model import Check

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|\+00:00)")
_BIC = re.compile(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
_LEI = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
# Latin script: ASCII letters, Latin-1 Supplement letters, Latin Extended-A/B, Latin Extended
# Additional, combining diacritics (decomposed input); digits, spaces and name punctuation.
_LATIN_NAME = re.compile(
    "[A-Za-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff\u0300-\u036f"
    " \u00a0.,;:'\u2019\u2018\u02bc`\"\u201c\u201d\\-\u2010\u2011\u2013"
    "/&()+?!#@*_%$\u20ac\u00b0\u00ba\u00aa]+"
)
_ALNUM_CLASS = "A-Za-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_HAS_ALNUM = re.compile(f"[{_ALNUM_CLASS}]")
# The same two rules for a batch of names joined by newlines (a character no valid name holds):
# every line Latin (one way to match each line, so linear time), and no line without a letter or digit.
_LATIN_LINES = re.compile(f"{_LATIN_NAME.pattern}(?:\n{_LATIN_NAME.pattern})*")
_LINE_WITHOUT_ALNUM = re.compile(f"\n[^{_ALNUM_CLASS}\n]*(?=\n)")  # searched in "\n" + joined + "\n"


def check_request_id(value: str | None) -> str:
    if not value:
        raise ProblemError("FORMAT_ERROR", "header X-Request-ID is required")
    if not _UUID.fullmatch(value):
        raise ProblemError("FORMAT_ERROR", "header X-Request-ID must be a UUID")
    return value


@functools.lru_cache(maxsize=1024)
def _parse_timestamp(value: str) -> float | str:
    """Epoch seconds of an RFC 3339 UTC timestamp, or the reason it is not one. Cached: clients
    send the same second-resolution timestamp on many requests (measured ~1 µs per parse)."""
    if not _RFC3339_UTC.fullmatch(value):
        return "X-Request-Timestamp must be RFC 3339 in UTC, e.g. 2026-01-31T12:00:00Z"
    text = value.upper().replace("Z", "+00:00")
    if "." in text:  # datetime parses at most 6 fractional digits
        head, _, tail = text.partition(".")
        text = f"{head}.{tail[:-6][:6].ljust(6, '0')}{tail[-6:]}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return "X-Request-Timestamp is not a valid date and time"


def check_timestamp(value: str | None, max_skew_s: float, now: float | None = None) -> None:
    if not value:
        raise ProblemError("TIMESTAMP_INVALID", "header X-Request-Timestamp is required")
    ts = _parse_timestamp(value) if len(value) <= 64 else "X-Request-Timestamp is too long"
    if isinstance(ts, str):
        raise ProblemError("TIMESTAMP_INVALID", ts)
    skew = abs((time.time() if now is None else now) - ts)
    if skew > max_skew_s:
        raise ProblemError(
            "TIMESTAMP_INVALID",
            f"X-Request-Timestamp is {skew:.0f} s from our clock (limit {max_skew_s:.0f} s)",
        )


@functools.lru_cache(maxsize=4096)
def _bic11(value: str) -> str | None:
    """The 11-character form of a well-formed BIC, else None (cached: BICs repeat across requests)."""
    if not _BIC.fullmatch(value):
        return None
    return value if len(value) == 11 else value + "XXX"


def check_bic(value: str, field: str) -> str:
    bic = _bic11(value)
    if bic is None:
        raise ProblemError("FORMAT_ERROR", f"{field} must be a BIC (8 or 11 upper-case letters/digits)")
    return bic


def check_name(value: str, field: str = "party.name") -> str:
    if not _LATIN_NAME.fullmatch(value):
        raise ProblemError("FORMAT_ERROR", f"{field} contains characters outside the Latin script")
    if not _HAS_ALNUM.search(value):
        raise ProblemError("FORMAT_ERROR", f"{field} must contain at least one letter or digit")
    return value


def check_lei(value: str) -> str:
    lei = value.upper()
    if not _LEI.fullmatch(lei) or iso7064_mod97(lei) != 1:
        raise ProblemError("FORMAT_ERROR", "party.identification.organisationId.lei is not a valid LEI")
    return lei


def to_check(req: VerificationRequest, psp_bics: frozenset[str]) -> Check:
    """Validate a decoded request and turn it into a domain ``Check``."""
    iban = req.party_account.iban.upper()
    problem = iban_problem(iban)
    if problem:
        raise ProblemError("FORMAT_ERROR", f"partyAccount.iban: {problem}")
    check_bic(
        req.requesting_agent.financial_institution_id.bicfi, "requestingAgent.financialInstitutionId.bicfi"
    )
    agent = check_bic(
        req.party_agent.financial_institution_id.bicfi, "partyAgent.financialInstitutionId.bicfi"
    )
    if agent not in psp_bics:
        raise ProblemError("FORMAT_ERROR", f"partyAgent {agent} is not served by this responder")
    party = req.party
    ident = party.identification
    if ident is not None:
        org = ident.organisation_id
        if org.lei is None and org.any_bic is None and not org.others:
            raise ProblemError(
                "FORMAT_ERROR", "party.identification.organisationId needs lei, anyBIC or others"
            )
        lei = check_lei(org.lei) if org.lei is not None else None
        any_bic = check_bic(org.any_bic, "organisationId.anyBIC") if org.any_bic is not None else None
        others = tuple((o.scheme_name_code.upper(), o.identification) for o in org.others or ())
        return Check(iban=iban, lei=lei, any_bic=any_bic, others=others)
    if party.name is None:
        raise ProblemError("FORMAT_ERROR", "party needs a name or an identification")
    return Check(iban=iban, name=check_name(party.name))


def to_checks(reqs: Sequence[VerificationRequest], psp_bics: frozenset[str]) -> list[Check | ProblemError]:
    """``to_check`` for a batch: for each request its Check or the ProblemError ``to_check`` raises.

    The usual bulk item (a name check with a valid IBAN, BICs and name) is decided by whole-batch
    rules: the IBANs by ``matching.iban.valid_many``, each distinct BIC once, all names by two regex
    passes over the joined names. Anything those do not pass goes through ``to_check`` itself, so
    every error (and its wording) is the single check's. Measured on 10,000 items: 11-13 ms against
    31-35 ms item by item. ``tests/test_validation.py`` proves the two equal with hypothesis.
    """
    if not reqs:
        return []
    ibans = [r.party_account.iban.upper() for r in reqs]
    names = [r.party.name for r in reqs]
    requesting = [r.requesting_agent.financial_institution_id.bicfi for r in reqs]
    agents = [r.party_agent.financial_institution_id.bicfi for r in reqs]
    requesting_ok = {b: _bic11(b) is not None for b in set(requesting)}
    agent_ok = {b: (bic := _bic11(b)) is not None and bic in psp_bics for b in set(agents)}
    idents = [r.party.identification for r in reqs]
    n = len(reqs)
    mask = valid_many(ibans)  # then the per-item conditions, each only where some item fails it
    if not all(requesting_ok.values()):
        mask &= np.fromiter(map(requesting_ok.__getitem__, requesting), dtype=bool, count=n)
    if not all(agent_ok.values()):
        mask &= np.fromiter(map(agent_ok.__getitem__, agents), dtype=bool, count=n)
    if idents.count(None) != n:
        mask &= np.fromiter((i is None for i in idents), dtype=bool, count=n)
    if None in names:
        mask &= np.fromiter((name is not None for name in names), dtype=bool, count=n)
    fast: list[bool] = mask.tolist()
    named = [name for name, f in zip(names, fast, strict=True) if f and name is not None]
    if named and not _names_valid(named):
        fast = [f and _name_valid(name) for f, name in zip(fast, names, strict=True)]
    return [
        Check(iban, name) if f else _checked(r, psp_bics)
        for f, iban, name, r in zip(fast, ibans, names, reqs, strict=True)
    ]


def _names_valid(names: list[str]) -> bool:
    joined = "\n".join(names)
    return (
        joined.count("\n") == len(names) - 1
        and _LATIN_LINES.fullmatch(joined) is not None
        and _LINE_WITHOUT_ALNUM.search(f"\n{joined}\n") is None
    )


def _name_valid(name: str | None) -> bool:
    if name is None:
        return False
    try:
        check_name(name)
    except ProblemError:
        return False
    return True


def _checked(req: VerificationRequest, psp_bics: frozenset[str]) -> Check | ProblemError:
    try:
        return to_check(req, psp_bics)
    except ProblemError as err:
        return err
