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

Speed: most non-matching pairs never reach the alignment: ``person_may_match`` (no word in common
and no way to re-split the letters) rejects them with a set and two sums; one word left on each side
after the exact pairs (one word misspelt) is one comparison (``_one_word_each``); one leftover word
on a side is a plain scan instead of the permutation search, and no or one possible pair needs no
search (``best_pairs``). All shortcuts are proven equal to the slow path (``score_person_full``) by
hypothesis (``tests/test_matching_properties.py``).
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
    "best_pairs",
    "compare_tokens",
    "edit_allowance",
    "person_may_match",
    "score_organisation",
    "score_person",
    "score_person_full",
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


_LAST_LETTERS: dict[MatchSettings, frozenset[tuple[str, str]] | None] = {}


def _ending_last_letters(s: MatchSettings) -> frozenset[tuple[str, str]] | None:
    """(last letter of one token, last letter of the other) that some ending pair of
    ``s.gendered_endings`` can give; None when an ending is empty (then any pair can). Memoised per
    settings object (its hash is cached and a look-up by the same object is an identity check; a
    plain dict, never evicted: there are only ever a few settings objects)."""
    try:
        return _LAST_LETTERS[s]
    except KeyError:
        pass
    endings = s.gendered_endings
    got = (
        None
        if any(not a or not b for a, b in endings)
        else frozenset(p for a, b in endings for p in ((a[-1], b[-1]), (b[-1], a[-1])))
    )
    _LAST_LETTERS[s] = got
    return got


def _gendered(q: str, r: str, s: MatchSettings) -> bool:
    last = _ending_last_letters(s)
    if last is not None and (q[-1:], r[-1:]) not in last:
        return False
    for a, b in s.gendered_endings:
        for x, y in ((q, r), (r, q)):
            if x.endswith(a) and y.endswith(b) and x[: len(x) - len(a)] == y[: len(y) - len(b)]:
                return True
    return False


@functools.lru_cache(maxsize=131_072)
def compare_tokens(q: str, r: str, s: MatchSettings) -> tuple[int, int]:
    """(kind, edits) of query token ``q`` against registered token ``r``."""
    if q == r:
        return _EXACT, 0
    if "ä" in q or "ö" in q or "ü" in q or "ä" in r or "ö" in r or "ü" in r:
        qa, qe = umlaut_forms(q)
        ra, re_ = umlaut_forms(r)
        if qa == ra or qe == re_:  # (tokens_equal)
            return _EXACT, 0
    else:
        qa = qe = q
        ra = re_ = r
    if are_variants(q, r):
        return _NICK, 0
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


def _umlauts(tokens: Sequence[str]) -> int:
    joined = "".join(tokens)
    return joined.count("ä") + joined.count("ö") + joined.count("ü")


def person_may_match(q: Sequence[str], r: Sequence[str]) -> bool:
    """Cheap necessary condition for ``score_person(q, r) != NO_MATCH`` (the early reject).

    ``score_person`` rejects a registered name of several words unless a word is right as written
    (an exact pair), and the one way out of that rule, a split/joined word, needs the words of
    both sides to spell the same letters (equal lengths in one of the two umlaut spellings). So
    when ``r`` has several words, no word of ``q`` equals one of ``r`` and the lengths differ in
    both spellings, the answer is NO_MATCH. Proven against ``score_person_full`` by hypothesis
    (``tests/test_matching_properties.py``).
    """
    if len(r) < 2 or not set(q).isdisjoint(r):
        return True
    uq, ur = _umlauts(q), _umlauts(r)
    if uq or ur:
        fq = [umlaut_forms(t) for t in q]
        fr = [umlaut_forms(t) for t in r]
        if not {a for a, _ in fq}.isdisjoint([a for a, _ in fr]):
            return True
        if not {e for _, e in fq}.isdisjoint([e for _, e in fr]):
            return True
    lq, lr = sum(map(len, q)), sum(map(len, r))
    return lq == lr or lq + uq == lr + ur


def score_person(q: Sequence[str], r: Sequence[str], s: MatchSettings) -> Score:
    """One query holder against one registered holder (token tuples)."""
    if not q or not r:
        return NO_MATCH
    if not person_may_match(q, r):  # (never true of two equal word multisets)
        return NO_MATCH
    if tuple(q) == tuple(r) or sorted(q) == sorted(r):
        return EXACT
    return _align_person(q, r, s)


def score_person_full(q: Sequence[str], r: Sequence[str], s: MatchSettings) -> Score:
    """``score_person`` without any shortcut (the early reject, the one-word-each alignment, the
    pair-search shortcuts); the reference for tests."""
    if not q or not r:
        return NO_MATCH
    if tuple(q) == tuple(r) or sorted(q) == sorted(r):
        return EXACT
    return _align_person(q, r, s, general=True)


_Pair = tuple[int, int, int, int]  # (query index, registered index, kind, edits)


def best_pairs(
    qi: Sequence[int],
    rj: Sequence[int],
    cand: dict[tuple[int, int], tuple[int, int]],
    *,
    general: bool = False,
) -> list[_Pair]:
    """Best assignment of the leftover tokens: the most fuzzy pairs, then the fewest edits; the
    first one found (query order, then registered order) wins a tie.

    No live pair (every candidate ``_NONE``: the usual no-match) or exactly one is answered without
    a search; one token left on a side (the usual case: one word misspelt) is a plain scan for the
    pair with the fewest edits; ``general=True`` forces the permutation search (tests prove they
    agree). More than four leftovers on a side: one greedy pass.
    """
    small = len(qi) <= 4 and len(rj) <= 4
    if not general:
        live = [(i, j) for i in qi for j in rj if cand[(i, j)][0] != _NONE]
        if len(live) <= 1:  # no pair at all, or one: every search finds just that
            return [(i, j, *cand[(i, j)]) for i, j in live]
        if small and (len(qi) == 1 or len(rj) == 1):
            found: _Pair | None = None
            for i, j in live:
                kind, e = cand[(i, j)]
                if found is None or e < found[3]:
                    found = (i, j, kind, e)
            return [] if found is None else [found]
    best: tuple[tuple[int, int], list[_Pair]] = ((0, 0), [])
    if small:
        k = min(len(qi), len(rj))
        for qs in itertools.permutations(qi, k):
            for rs in itertools.permutations(rj, k):
                got = [(i, j, *cand[(i, j)]) for i, j in zip(qs, rs, strict=True)]
                got = [g for g in got if g[2] != _NONE]
                key = (len(got), -sum(g[3] for g in got))
                if key > best[0]:
                    best = (key, got)
        return best[1]
    used_r: set[int] = set()
    for i in qi:
        opts = [(cand[(i, j)][1], j) for j in rj if j not in used_r and cand[(i, j)][0] != _NONE]
        if opts:
            _, j = min(opts)
            used_r.add(j)
            best[1].append((i, j, *cand[(i, j)]))
    return best[1]


def _align_person(q: Sequence[str], r: Sequence[str], s: MatchSettings, *, general: bool = False) -> Score:
    nq, nr = len(q), len(r)
    # 1. exact pairs: each query token takes the first free registered token equal to it (without
    #    umlauts on either side, tokens_equal is plain equality)
    joined = "".join(q) + "".join(r)
    eq = tokens_equal if "ä" in joined or "ö" in joined or "ü" in joined else str.__eq__
    rj = list(range(nr))  # registered tokens left, in order
    qi: list[int] = []  # query tokens left, in order
    for i, qt in enumerate(q):
        for j in rj:
            if eq(qt, r[j]):
                rj.remove(j)
                break
        else:
            qi.append(i)
    n_exact = nq - len(qi)
    if len(qi) == 1 and len(rj) == 1 and not general:
        return _one_word_each(q[qi[0]], r[rj[0]], rj[0] == nr - 1, s)
    # 2. fuzzy pairs: best assignment of the few remaining tokens
    pairs: list[_Pair] = []
    extra, missing = qi, rj
    if qi and rj:
        pairs = best_pairs(
            qi, rj, {(i, j): compare_tokens(q[i], r[j], s) for i in qi for j in rj}, general=general
        )
        if pairs:
            paired_q = [p[0] for p in pairs]
            paired_r = [p[1] for p in pairs]
            extra = [i for i in qi if i not in paired_q]
            missing = [j for j in rj if j not in paired_r]
    deviations = 0
    edits = 0
    reason = "exact"
    if extra and missing:
        if not _concat_equal([q[i] for i in extra], [r[j] for j in missing], s.spacing_max_tokens):
            return _split_word(q, r, qi, rj, s)
        deviations += 1
        reason = "spacing"
        extra, missing = [], []
    if extra:  # (extra and missing are in order: the ends are the first and last words)
        if extra[0] == 0 or extra[-1] == nq - 1:
            return _split_word(q, r, qi, rj, s)
        deviations += 1
        reason = "middle_name_extra"
    if missing:
        if missing[0] == 0 or missing[-1] == nr - 1:
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


def _one_word_each(qt: str, rt: str, surname: bool, s: MatchSettings) -> Score:
    """``_align_person`` when one word is left on each side (the usual close match: one word
    misspelt, abbreviated or a nickname), without the pair search and the bookkeeping of leftovers.

    The two words are not equal (the exact step would have paired them), so without a fuzzy pair
    they are an extra and a missing word of one letter sequence each, which no spacing rule joins:
    no match. Every other registered word was paired exactly, so "a multi-word name needs a word
    right as written" holds. Proven equal to the general path by hypothesis
    (``tests/test_matching_properties.py``).
    """
    kind, e = compare_tokens(qt, rt, s)
    if kind == _NONE or (kind == _INITIAL and surname):  # an initial never stands for the surname
        return NO_MATCH
    if s.max_deviations_person < 1:
        return NO_MATCH
    return Score(1, e, _REASON[kind])


# ---------------------------------------------------------------------------------------------
# organisations
# ---------------------------------------------------------------------------------------------


def _split_org(tokens: Sequence[str], marker: str) -> list[tuple[tuple[str, ...], frozenset[str]]]:
    """Readings of an organisation name: (body, forms); a start form may also be a word of the name."""
    marked = [t for t in tokens if t.startswith(marker)]
    if not marked:
        return [(tuple(tokens), frozenset())]
    body = tuple([t for t in tokens if not t.startswith(marker)])
    forms = frozenset(marked)
    readings = [(body, forms)]
    if len(tokens) > 1 and tokens[0].startswith(marker):
        rest = tuple(t for t in tokens[1:] if t.startswith(marker))
        readings.append(((tokens[0][len(marker) :], *body), frozenset(rest)))
    return readings


def _body_relation(bq: tuple[str, ...], br: tuple[str, ...], s: MatchSettings) -> Score:
    if len(bq) == len(br):
        diff = [(a, b) for a, b in zip(bq, br, strict=True) if a != b and not tokens_equal(a, b)]
        if not diff:
            return EXACT
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
