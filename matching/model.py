"""Plain data that crosses the matching/ boundary: what is asked, what is answered."""

from __future__ import annotations

from typing import Literal

import msgspec

Code = Literal["MTCH", "CMTC", "NMTC", "NOAP"]
AccountType = Literal["person", "organisation"]
AccountStatus = Literal["active", "closed", "blocked"]


class Check(msgspec.Struct, frozen=True, gc=False):
    """One verification asked of the index: a name check, or an organisation-identifier check.

    When any identifier is given, the identifier is checked and ``name`` is ignored (DESIGN.md §1).
    ``others`` holds ``(scheme_code, identification)`` pairs, e.g. ``("TXID", "DE123456789")``.
    """

    iban: str
    name: str | None = None
    lei: str | None = None
    any_bic: str | None = None
    others: tuple[tuple[str, str], ...] = ()

    @property
    def is_id_check(self) -> bool:
        return self.lei is not None or self.any_bic is not None or bool(self.others)


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """The answer to one Check. ``matched_name`` is set if and only if ``code == "CMTC"``.

    ``reason`` is machine-readable (``exact``, ``typo``, ``initial``, ``account_closed``, …): it goes
    to metrics and the audit trail, never onto the wire.
    """

    kind: Literal["name", "id"]
    code: Code
    reason: str
    matched_name: str | None = None
