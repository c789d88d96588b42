"""Scores → MTCH / CMTC / NMTC with a machine-readable reason (DESIGN.md §2).

* **MTCH** only when the query equals one registered name after normalisation (case, accents,
  umlaut spellings, punctuation, titles, word order of a person, "Surname, First", a legal form
  written short or long or left out). For a query naming several holders ("Anna und Jan Nowak"),
  every holder must equal a different registered holder (reason ``joint_both``).
* **CMTC** when one registered name is within ``MatchSettings`` deviations; ``matched`` points at
  it (the closest registered name; for several query holders, the one that deviates).
* **NMTC** otherwise (reason ``no_match``).

Reasons: ``exact``, ``legal_form_missing``, ``joint_both`` (MTCH); ``typo``, ``spacing``,
``initial``, ``nickname``, ``middle_name_missing``, ``middle_name_extra``, ``legal_form_differs``,
``word_order`` (CMTC); ``no_match`` (NMTC).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple, cast

from matching.normalize import (
    FORM_MARKER,
    HOLDER_SEPARATOR,
    fold,
    fold_many,
    organisation_tokens,
    person_holders,
    person_is_canonical,
)
from matching.scorer import NO_MATCH, Score, score_organisation, score_person
from matching.settings import DEFAULT_SETTINGS, MatchSettings

__all__ = ["DEFAULT_SETTINGS", "MatchSettings", "NameDecision", "decide_names"]


class NameDecision(NamedTuple):
    code: str  # "MTCH" | "CMTC" | "NMTC"
    matched: int  # index into the account's registered names; -1 when NMTC
    reason: str


_NMTC = NameDecision("NMTC", -1, "no_match")
#: The usual answer, made once: MTCH on registered name i (i < 8).
_MTCH_EXACT = tuple(NameDecision("MTCH", i, "exact") for i in range(8))


# The prepared strings are parsed on every check, uncached: in real traffic each account's names
# come by once per batch, and a split is cheaper than a cache miss plus insertion.
def _person_parse(prepared: str) -> tuple[tuple[str, ...], ...]:
    if HOLDER_SEPARATOR not in prepared:
        return (tuple(prepared.split(" ")),) if prepared else ()
    return tuple(tuple(h.split(" ")) for h in prepared.split(HOLDER_SEPARATOR) if h)


def _org_parse(prepared: str) -> tuple[str, ...]:
    return tuple(prepared.split(" ")) if prepared else ()


def _rank(score: Score) -> tuple[int, int, int]:
    """Sort key, smaller is better: MTCH (0 deviations) < CMTC < NMTC."""
    if score.deviations < 0:
        return (2, 0, 0)
    return (0 if score.deviations == 0 else 1, score.deviations, score.edits)


def _to_decision(score: Score, matched: int) -> NameDecision:
    if score.deviations < 0:
        return _NMTC
    return NameDecision("MTCH" if score.deviations == 0 else "CMTC", matched, score.reason)


def _decide_person(
    q_holders: tuple[tuple[str, ...], ...], prepared: Sequence[str], s: MatchSettings
) -> NameDecision:
    if not q_holders:
        return _NMTC
    if len(q_holders) == 1:
        q = q_holders[0]
        best, best_i = NO_MATCH, -1
        best_rank = _rank(best)
        for i, p in enumerate(prepared):
            for h in _person_parse(p):
                sc = score_person(q, h, s)
                if sc.deviations < 0:
                    continue
                rank = _rank(sc)
                if rank < best_rank:
                    best, best_i, best_rank = sc, i, rank
                    if sc.deviations == 0:
                        return _to_decision(best, best_i)
        return _to_decision(best, best_i)
    holders = [(i, h) for i, p in enumerate(prepared) for h in _person_parse(p)]
    if not holders:
        return _NMTC
    # several holders named in the query: each must be a different registered holder
    if len(q_holders) > len(holders):
        return _NMTC
    table = [[score_person(q, h, s) for _, h in holders] for q in q_holders]
    best_key: tuple[int, int, int] | None = None
    best_pick: tuple[int, ...] = ()
    for pick in itertools.permutations(range(len(holders)), len(q_holders)):
        scores = [table[a][b] for a, b in enumerate(pick)]
        if any(sc.deviations < 0 for sc in scores):
            continue
        key = (sum(sc.deviations for sc in scores), sum(sc.edits for sc in scores), 0)
        if best_key is None or key < best_key:
            best_key, best_pick = key, pick
    if best_key is None:
        return _NMTC
    scores = [table[a][b] for a, b in enumerate(best_pick)]
    if best_key[0] == 0:
        return NameDecision("MTCH", holders[best_pick[0]][0], "joint_both")
    if best_key[0] > s.max_deviations_person:
        return _NMTC
    worst = max(range(len(scores)), key=lambda k: scores[k].deviations)
    return NameDecision("CMTC", holders[best_pick[worst]][0], scores[worst].reason)


def _decide_organisation(q: tuple[str, ...], prepared: Sequence[str], s: MatchSettings) -> NameDecision:
    best, best_i = NO_MATCH, -1
    best_rank = _rank(best)
    for i, p in enumerate(prepared):
        sc = score_organisation(q, _org_parse(p), s, FORM_MARKER)
        if sc.deviations < 0:
            continue
        rank = _rank(sc)
        if rank < best_rank:
            best, best_i, best_rank = sc, i, rank
            if sc.deviations == 0:
                break
    return _to_decision(best, best_i)


def _mtch_exact(i: int) -> NameDecision:
    """MTCH on registered name ``i`` (shared for the first few)."""
    return _MTCH_EXACT[i] if i < len(_MTCH_EXACT) else NameDecision("MTCH", i, "exact")


def _exact_at(prepared: Sequence[str], canon: str) -> NameDecision | None:
    """MTCH on the first registered name whose canonical string is ``canon``, if any."""
    if canon not in prepared:
        return None
    return _mtch_exact(prepared.index(canon))


def _raw_exact(q: str, names: Sequence[str], prepared: Sequence[str]) -> NameDecision | None:
    """MTCH when the query is a registered name byte for byte: its canonical string is that name's,
    so the answer is the first registered name with that string, without folding the query. Not for
    a string naming several holders (matched holder by holder: ``joint_both``) or an empty one (a
    name of punctuation only is never a match)."""
    if q not in names:
        return None
    canon = prepared[names.index(q)]
    if not canon or HOLDER_SEPARATOR in canon:
        return None
    return _mtch_exact(prepared.index(canon))


def decide_one(
    folded_query: str, kind: str, prepared: Sequence[str], s: MatchSettings = DEFAULT_SETTINGS
) -> NameDecision:
    """Decision for one query, already character-folded (``normalize.fold``)."""
    if not folded_query:  # nothing left of the name (only punctuation): never a match
        return _NMTC
    if kind == "organisation":
        q = organisation_tokens(folded_query)
        return _exact_at(prepared, " ".join(q)) or _decide_organisation(q, prepared, s)
    if person_is_canonical(folded_query):  # no title, connector, particle or comma: nothing to rewrite
        return _exact_at(prepared, folded_query) or _decide_person(
            (tuple(folded_query.split(" ")),), prepared, s
        )
    qh = person_holders(folded_query)
    if len(qh) == 1:
        hit = _exact_at(prepared, " ".join(qh[0]))
        if hit is not None:
            return hit
    return _decide_person(qh, prepared, s)


def _decide_raw(
    q: str, kind: str, names: Sequence[str], prepared: Sequence[str], s: MatchSettings
) -> NameDecision:
    """``decide_names`` for one item (the same inline answers)."""
    return _raw_exact(q, names, prepared) or decide_one(fold(q), kind, prepared, s)


def decide_names(
    queries: Sequence[str],
    kinds: Sequence[str],
    registered: Sequence[Sequence[str]],
    prepared: Sequence[Sequence[str]],
    settings: MatchSettings = DEFAULT_SETTINGS,
) -> list[NameDecision]:
    """Batch: ``queries[i]`` (the raw name the payer typed) against account i, whose raw registered
    names are ``registered[i]`` and whose ``prepare_registered()`` strings are ``prepared[i]``.

    Two usual answers are given inline, without ``decide_one`` (``tests/test_matching_properties.py``
    proves the batch equal to it item by item):

    * the name exactly as registered, byte for byte (``_raw_exact``; a name copied from an invoice,
      in the bench mix 70 % of the exact names), without folding the query;
    * a person's name, already canonical once folded, equal to a registered name's canonical string.
    """
    n = len(queries)
    if not (len(kinds) == len(registered) == len(prepared) == n):
        raise ValueError("queries, kinds, registered and prepared differ in length")
    if n == 1:  # a lone check (or a micro-batch of one): no batch bookkeeping
        return [_decide_raw(queries[0], kinds[0], registered[0], prepared[0], settings)]
    out: list[NameDecision | None] = [None] * n
    rest: list[int] = []  # the items left for folding
    for i, (q, names, p) in enumerate(zip(queries, registered, prepared, strict=True)):
        if q in names and (hit := _raw_exact(q, names, p)) is not None:  # (the test: no call)
            out[i] = hit
        else:
            rest.append(i)
    if not rest:
        return cast(list[NameDecision], out)
    left = [queries[i] for i in rest]
    folded = fold_many(left) if len(left) > 1 else [fold(left[0])]
    for i, f in zip(rest, folded, strict=True):
        k, p = kinds[i], prepared[i]
        if f and k != "organisation" and f in p and person_is_canonical(f):
            out[i] = _mtch_exact(p.index(f))
        else:
            out[i] = decide_one(f, k, p, settings)
    return cast(list[NameDecision], out)
