"""From decoded wire requests to wire answers: validation, matching, shaping the answer.

The HTTP routes and ``vop eval`` call the same methods, so they share one code path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.index_holder import IndexHolder
from app.problems import ProblemError
from app.validation import to_check, to_checks
from app.wire import VerificationRequest, VerificationResponse
from matching.model import Check, Outcome
from matching.policy import DEFAULT_SETTINGS, MatchSettings
from matching.verify import verify


def normalise_bics(bics: Iterable[str]) -> frozenset[str]:
    return frozenset(b.upper() + ("XXX" if len(b) == 8 else "") for b in bics)


def to_response(outcome: Outcome) -> VerificationResponse:
    if outcome.kind == "id":
        return VerificationResponse(party_id_match=outcome.code)  # type: ignore[arg-type]
    if outcome.code == "CMTC":
        return VerificationResponse(party_name_match="CMTC", matched_name=outcome.matched_name)
    return VerificationResponse(party_name_match=outcome.code)


def not_ready() -> ProblemError:
    return ProblemError("SERVICE_UNAVAILABLE", "account index is not loaded yet", 503, {"Retry-After": "1"})


class Verifier:
    def __init__(
        self,
        holder: IndexHolder,
        psp_bics: Iterable[str],
        settings: MatchSettings = DEFAULT_SETTINGS,
        stale_policy: str = "serve",
    ) -> None:
        self.holder = holder
        self.psp_bics = normalise_bics(psp_bics)
        self.settings = settings
        self.noap_when_stale = stale_policy == "noap"

    def check(self, request: VerificationRequest) -> Check:
        """Validate one request (raises ProblemError) and turn it into a domain Check."""
        return to_check(request, self.psp_bics)

    def checks(self, requests: Sequence[VerificationRequest]) -> list[Check | ProblemError]:
        """``check`` for a batch: each request's Check, or the ProblemError it would raise."""
        return to_checks(requests, self.psp_bics)

    def outcomes(self, checks: Sequence[Check]) -> tuple[int, list[Outcome]]:
        """Answer a batch against one index version (taken once, so a swap never splits it);
        returns that version with the outcomes, for the audit trail."""
        index = self.holder.current
        if index is None:
            raise not_ready()
        if self.noap_when_stale and self.holder.stale():
            return index.version, [
                Outcome("id" if c.is_id_check else "name", "NOAP", "index_stale") for c in checks
            ]
        return index.version, verify(index, checks, self.settings)

    def outcome(self, request: VerificationRequest) -> Outcome:
        return self.outcomes([self.check(request)])[1][0]

    def answer(self, request: VerificationRequest) -> VerificationResponse:
        return to_response(self.outcome(request))
