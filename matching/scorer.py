"""Scores: how one canonical query name deviates from one canonical registered name.

Input is what ``matching.normalize`` produces (folded tokens; ``#form`` markers for organisations).
Output is a ``Score``: the number of *deviations* (each one a reason for a close match), the total
character edits, and a machine-readable reason. ``matching.policy`` turns scores into codes.

Token comparison (``compare_tokens``), in order:

* ``exact``    equal, with German umlauts equal to both spellings (ü = u = ue);
* ``nickname`` a known name ↔ short-form pair (``matching.name_variants``);
* ``initial``  one side is a single letter, the first letter of the other;
* ``typo``     Damerau (OSA) distance within the allowance for the registered token's length, the
  first letter unchanged (Jansen / Hansen, Sandberg / Lindberg are other families), unless
  the two tokens are two different known names (Sebastian / Sébastien, Jansen / Janssen) or differ only in a
  gendered ending (Kowalski / Kowalska, Francesco / Francesca) — those are other people.

Persons are aligned order-insensitively; organisations order-sensitively (another order is one
deviation, ``word_order``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import NamedTuple

from rapidfuzz.distance import OSA

from matching.legal_forms import umlaut_forms
from matching.name_variants import are_variants, is_known_name
from matching.settings import MatchSettings

__all__ = [
    "NO_MATCH",
    "Score",
    "compare_tokens",
    "edit_allowance",
    "score_organisation",
    "score_person",
]

_EXACT, _NICK, _INITIAL, _TYPO, _NONE = 0, 1, 2, 3, 4


class Score(NamedTuple):
    """``deviations`` < 0 means no match at all."""

    deviations: int
    edits: int
    reason: str


NO_MATCH = Score(-1, 0, "no_match")
EXACT = Score(0, 0, "exact")


def edit_allowance(length: int, s: MatchSettings) -> int:
    if length >= s.typo_long_min_len:
        return s.typo_max_edits_long
    if length >= s.typo_medium_min_len:
        return s.typo_max_edits_medium
    return s.typo_max_edits_short


def _has_umlaut(t: str) -> bool:
    return "ä" in t or "ö" in t or "ü" in t


def tokens_equal(q: str, r: str) -> bool:
    if q == r:
        return True
    if not (_has_umlaut(q) or _has_umlaut(r)):
        return False
    qa, qe = umlaut_forms(q)
    ra, re_ = umlaut_forms(r)
    return qa == ra or qe == re_


def _gendered(q: str, r: str, s: MatchSettings) -> bool:
    for a, b in s.gendered_endings:
        for x, y in ((q, r), (r, q)):
            if x.endswith(a) and y.endswith(b) and x[: len(x) - len(a)] == y[: len(y) - len(b)]:
                return True
    return False


@functools.lru_cache(maxsize=131_072)
def compare_tokens(q: str, r: str, s: MatchSettings) -> tuple[int, int]:
    """(kind, edits) of query token ``q`` against registered token ``r``."""
    if tokens_equal(q, r):
        return _EXACT, 0
    if are_variants(q, r):
        return _NICK, 0
    qa, qe = umlaut_forms(q)
    ra, re_ = umlaut_forms(r)
    if (len(q) == 1 and ra.startswith(qa)) or (len(r) == 1 and qa.startswith(ra)):
        return (_INITIAL, 0) if s.allow_initials else (_NONE, 0)
    if len(q) == 1 or len(r) == 1:
        return _NONE, 0
    allow = edit_allowance(len(ra), s)
    if allow <= 0 or (s.typo_keep_first_letter and qa[0] != ra[0]):
        return _NONE, 0
    d = OSA.distance(qa, ra, score_cutoff=allow)
    if qe != qa or re_ != ra:
        d = min(d, OSA.distance(qe, re_, score_cutoff=allow))
    if d > allow:
        return _NONE, 0
    if s.refuse_typo_between_known_names and is_known_name(q) and is_known_name(r):
        return _NONE, 0
    if _gendered(qa, ra, s):
        return _NONE, 0
    return _TYPO, d


_REASON = {_NICK: "nickname", _INITIAL: "initial", _TYPO: "typo"}


def _concat_equal(q_left: Sequence[str], r_left: Sequence[str], limit: int) -> bool:
    target = "".join(r_left)
    if len(q_left) > limit:
        return tokens_equal("".join(q_left), target)
    return any(tokens_equal("".join(p), target) for p in itertools.permutations(q_left))


def _split_word(q: Sequence[str], r: Sequence[str], qi: list[int], rj: list[int], s: MatchSettings) -> Score:
    """Fallback when the token alignment fails: the words left after the exact pairs are the same
    letters split or joined differently ("O Brien" / "O'Brien", "van denB erg" / "van den Berg")."""
    if (
        qi
        and rj
        and len(qi) + len(rj) > 2
        and s.max_deviations_person >= 1
        and _concat_equal([q[i] for i in qi], [r[j] for j in rj], s.spacing_max_tokens)
    ):
        return Score(1, 0, "spacing")
    return NO_MATCH


def score_person(q: Sequence[str], r: Sequence[str], s: MatchSettings) -> Score:
    """One query holder against one registered holder (token tuples)."""
    if not q or not r:
        return NO_MATCH
    if tuple(q) == tuple(r) or sorted(q) == sorted(r):
        return EXACT
    nq, nr = len(q), len(r)
    q_used = [False] * nq
    r_used = [False] * nr
    # 1. exact pairs
    n_exact = 0
    for i, qt in enumerate(q):
        for j, rt in enumerate(r):
            if not r_used[j] and tokens_equal(qt, rt):
                q_used[i] = r_used[j] = True
                n_exact += 1
                break
    qi = [i for i in range(nq) if not q_used[i]]
    rj = [j for j in range(nr) if not r_used[j]]
    # 2. fuzzy pairs: best assignment of the few remaining tokens
    pairs: list[tuple[int, int, int, int]] = []  # (qi, rj, kind, edits)
    if qi and rj:
        cand = {(i, j): compare_tokens(q[i], r[j], s) for i in qi for j in rj}
        best: tuple[tuple[int, int], list[tuple[int, int, int, int]]] = ((0, 0), [])
        small = len(qi) <= 4 and len(rj) <= 4
        if small:
            k = min(len(qi), len(rj))
            for qs in itertools.permutations(qi, k):
                for rs in itertools.permutations(rj, k):
                    got = [(i, j, *cand[(i, j)]) for i, j in zip(qs, rs, strict=True)]
                    got = [g for g in got if g[2] != _NONE]
                    key = (len(got), -sum(g[3] for g in got))
                    if key > best[0]:
                        best = (key, got)
        else:
            used_r: set[int] = set()
            for i in qi:
                opts = [(cand[(i, j)][1], j) for j in rj if j not in used_r and cand[(i, j)][0] != _NONE]
                if opts:
                    _, j = min(opts)
                    used_r.add(j)
                    best[1].append((i, j, *cand[(i, j)]))
        pairs = best[1]
        for i, j, _, _ in pairs:
            q_used[i] = r_used[j] = True
    extra = [i for i in range(nq) if not q_used[i]]
    missing = [j for j in range(nr) if not r_used[j]]
    deviations = 0
    edits = 0
    reason = "exact"
    if extra and missing:
        if not _concat_equal([q[i] for i in extra], [r[j] for j in missing], s.spacing_max_tokens):
            return _split_word(q, r, qi, rj, s)
        deviations += 1
        reason = "spacing"
        extra, missing = [], []
    if extra:
        if any(i in (0, nq - 1) for i in extra):
            return _split_word(q, r, qi, rj, s)
        deviations += 1
        reason = "middle_name_extra"
    if missing:
        if any(j in (0, nr - 1) for j in missing):
            return _split_word(q, r, qi, rj, s)
        deviations += 1
        reason = "middle_name_missing"
    initials = False
    for _, j, kind, e in pairs:
        if kind == _INITIAL:
            if j == nr - 1:  # an initial never stands for the surname
                return NO_MATCH
            if not initials:
                deviations += 1
            initials = True
        else:
            deviations += 1
        edits += e
        reason = _REASON[kind]
    if n_exact == 0 and nr > 1:
        return NO_MATCH  # a multi-word name needs at least one word right as written
    if deviations > s.max_deviations_person:
        return NO_MATCH
    return Score(deviations, edits, reason)


# ---------------------------------------------------------------------------------------------
# organisations
# ---------------------------------------------------------------------------------------------


def _split_org(tokens: Sequence[str], marker: str) -> list[tuple[tuple[str, ...], frozenset[str]]]:
    """Readings of an organisation name: (body, forms); a start form may also be a word of the name."""
    body = tuple(t for t in tokens if not t.startswith(marker))
    forms = frozenset(t for t in tokens if t.startswith(marker))
    readings = [(body, forms)]
    if len(tokens) > 1 and tokens[0].startswith(marker):
        rest = tuple(t for t in tokens[1:] if t.startswith(marker))
        readings.append(((tokens[0][len(marker) :], *body), frozenset(rest)))
    return readings


def _body_relation(bq: tuple[str, ...], br: tuple[str, ...], s: MatchSettings) -> Score:
    if len(bq) == len(br) and all(tokens_equal(a, b) for a, b in zip(bq, br, strict=True)):
        return EXACT
    if len(bq) == len(br):
        diff = [(a, b) for a, b in zip(bq, br, strict=True) if not tokens_equal(a, b)]
        if len(diff) == 1:
            kind, e = compare_tokens(diff[0][0], diff[0][1], s)
            if kind == _TYPO:
                return Score(1, e, "typo")
        if sorted(bq) == sorted(br):
            return Score(1, 0, "word_order")
    if tokens_equal("".join(bq), "".join(br)):
        return Score(1, 0, "spacing")
    return NO_MATCH


def score_organisation(q: Sequence[str], r: Sequence[str], s: MatchSettings, marker: str) -> Score:
    """One query name against one registered organisation name (token tuples with form markers)."""
    if not q or not r:
        return NO_MATCH
    if tuple(q) == tuple(r):
        return EXACT
    best = NO_MATCH
    for bq, fq in _split_org(q, marker):
        for br, fr in _split_org(r, marker):
            if not bq or not br:
                continue
            body = _body_relation(bq, br, s)
            if body.deviations < 0:
                continue
            deviations, reason = body.deviations, body.reason
            if fq and fr and not (fq & fr):
                deviations += 1
                reason = "legal_form_differs" if body.deviations == 0 else reason
            elif fq != fr and deviations == 0:
                reason = "legal_form_missing"
            if deviations > s.max_deviations_org:
                continue
            cand = Score(deviations, body.edits, reason)
            if best.deviations < 0 or (cand.deviations, cand.edits) < (best.deviations, best.edits):
                best = cand
    return best
