"""Hypothesis properties of normalisation and matching."""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import OSA

from bench.sample_names import FIRST_NAMES, ORG_WORDS, SURNAMES
from matching import legal_forms
from matching.legal_forms import umlaut_forms
from matching.name_variants import are_variants, is_known_name
from matching.normalize import fold, fold_many, prepare_query, prepare_registered
from matching.policy import DEFAULT_SETTINGS, MatchSettings, decide_names, decide_one
from matching.scorer import (
    NO_MATCH,
    _gendered,
    best_pairs,
    compare_tokens,
    edit_allowance,
    person_may_match,
    score_person,
    score_person_full,
    tokens_equal,
)

LATINISH = st.characters(
    codec="utf-8",
    categories=("Lu", "Ll", "Mn", "Nd", "Zs", "Po", "Pd", "Ps", "Pe"),
    max_codepoint=0x024F,
) | st.sampled_from(list("ßæøłđþÆØŁĐÞ'’.-,& \u0308\u0301ﬁ"))
#: Anything below U+3000 (Latin, Greek, Cyrillic, combining marks, symbols, compatibility forms).
WIDE = st.characters(codec="utf-8", max_codepoint=0x2FFF, exclude_categories=("Cs", "Cn"))
RAW = st.text(LATINISH, max_size=40)

FIRST = st.sampled_from(
    [
        *FIRST_NAMES,
        "Katharina",
        "Henrik",
        "João",
        "Åsa",
        "Małgorzata",
        "Amélie",
        "Hélène",
        "Erzsébet",
        "Ignacio",
        "Oskar",
    ]
)
LAST = st.sampled_from(
    [
        *SURNAMES,
        "O'Sullivan",
        "Ng",
        "Li",
        "Sa",
        "As",
        "Ab",
        "Oy",
        "Großmann",
        "Kowalski",
        "Du",
        "Wu",
        "Lindqvist",
    ]
)
TITLE = st.sampled_from(
    ["Dr.", "Prof.", "Mr", "Mrs", "Herr", "Frau", "Mme", "Sr.", "Sra.", "Dhr.", "Ing.", "Mag."]
)
ORG_WORD = st.sampled_from(
    [
        *ORG_WORDS,
        "Sonnenschein",
        "Kft",
        "AS",
        "Sa",
        "Estrella",
        "Zakład",
    ]
)
FORM = st.sampled_from(["GmbH", "AG", "B.V.", "Sp. z o.o.", "Ltd", "S.A.", "s.r.o.", "ApS", "Oy", "", "SRL"])


def _decide(kind: str, registered: str, query: str) -> str:
    prep = prepare_registered([registered], [kind])
    return decide_names([query], [kind], [[registered]], [prep])[0].code


def _strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


@given(RAW)
@settings(max_examples=300)
def test_fold_is_idempotent(raw: str) -> None:
    once = fold(raw)
    assert fold(once) == once


#: Characters at the edges of the batch separator (NUL): combining marks, final sigma, runs of
#: spaces and punctuation, so that a step acting across two joined names would show.
EDGE = st.sampled_from([*" \u0308\u0301\u0327ΣσςaAoOuU.,&'-ﬁ\u00a0\t", "Σ.", " .ab", "a."])


EDGY = st.lists(EDGE, max_size=6).map("".join)


@given(st.lists(st.text(WIDE, max_size=40) | RAW | EDGY, min_size=1, max_size=20))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_scalar_and_batch_paths_are_identical(raws: list[str]) -> None:
    assert fold_many(raws, batched=True) == [fold(r) for r in raws]


def test_batch_fold_with_nul_in_a_name() -> None:
    raws = ["Anna\x00Nowak", "Jürgen  Müller", " ", "Ó Briain"]
    expected = ["anna nowak", "jürgen müller", "", "o briain"]
    assert fold_many(raws, batched=True) == [fold(r) for r in raws] == expected


@given(RAW, st.sampled_from(["person", "organisation"]))
@settings(max_examples=200)
def test_prepare_is_idempotent_on_canonical_text(raw: str, kind: str) -> None:
    canon = prepare_query(raw, kind)
    assume("#" not in canon and "+" not in canon)
    assert prepare_query(canon, kind) == canon


@given(FIRST, LAST, FIRST, LAST)
@settings(max_examples=200)
def test_person_answer_ignores_case_accents_spacing_and_titles(f1: str, l1: str, f2: str, l2: str) -> None:
    registered = f"{f1} {l1}"
    for query in (registered, f"{f2} {l1}", f"{f1} {l2}", f"{f2} {l2}"):
        base = _decide("person", registered, query)
        assert _decide("person", registered, query.upper()) == base
        assert _decide("person", registered, _strip_accents(query)) == base
        assert _decide("person", registered, "  " + query.replace(" ", "   ") + " ") == base


@given(FIRST, LAST, TITLE)
@settings(max_examples=200)
def test_a_title_changes_nothing(first: str, last: str, title: str) -> None:
    assert _decide("person", f"{first} {last}", f"{title} {first} {last}") == "MTCH"
    assert _decide("person", f"{title} {first} {last}", f"{first} {last}") == "MTCH"


@given(FIRST, LAST)
def test_a_registered_person_matches_itself(first: str, last: str) -> None:
    assert _decide("person", f"{first} {last}", f"{first} {last}") == "MTCH"
    assert _decide("person", f"{first} {last}", f"{last}, {first}") == "MTCH"


@given(st.lists(ORG_WORD, min_size=1, max_size=4), FORM)
def test_a_registered_organisation_matches_itself(words: list[str], form: str) -> None:
    name = " ".join([*words, form]).strip()
    assert _decide("organisation", name, name) == "MTCH"
    assert _decide("organisation", name, name.upper()) == "MTCH"


@given(FIRST, FIRST, LAST)
@settings(max_examples=300)
def test_another_first_name_is_never_a_match(f1: str, f2: str, last: str) -> None:
    a, b = prepare_query(f1, "person"), prepare_query(f2, "person")
    assume(a != b and not are_variants(a, b))
    assert _decide("person", f"{f1} {last}", f"{f2} {last}") != "MTCH"
    assert _decide("person", f"{f1} {last}", f"{f2} {last}") == "NMTC"


@given(FIRST, LAST, LAST)
@settings(max_examples=300)
def test_another_surname_is_never_a_match(first: str, l1: str, l2: str) -> None:
    assume(prepare_query(l1, "person") != prepare_query(l2, "person"))
    assert _decide("person", f"{first} {l1}", f"{first} {l2}") != "MTCH"


# ---------------------------------------------------------------------------------------------
# Fast paths of the scorer agree with the slow ones
# ---------------------------------------------------------------------------------------------

#: Short tokens over a tiny alphabet (with umlauts and their spellings), so that equal words,
#: umlaut-equal words, initials, typos and re-split words all happen often.
TOKEN = st.text(st.sampled_from("abeuäü"), min_size=1, max_size=5) | st.sampled_from(
    ["muller", "müller", "mueller", "anna", "ana", "jan", "j", "nowak", "novak", "bill", "william"]
)
TOKENS = st.lists(TOKEN, min_size=1, max_size=5).map(tuple)
PERSON_SETTINGS = st.sampled_from(
    [
        DEFAULT_SETTINGS,
        MatchSettings(max_deviations_person=2),
        MatchSettings(spacing_max_tokens=1),
        MatchSettings(allow_initials=False, typo_max_edits_short=1),
    ]
)


@given(TOKENS, TOKENS, PERSON_SETTINGS)
@settings(max_examples=1500)
def test_person_shortcuts_agree_with_the_full_person_scorer(
    q: tuple[str, ...], r: tuple[str, ...], s: MatchSettings
) -> None:
    full = score_person_full(q, r, s)
    if not person_may_match(q, r):
        assert full == NO_MATCH
    assert score_person(q, r, s) == full


@given(TOKENS, st.data(), PERSON_SETTINGS)
@settings(max_examples=1500)
def test_one_word_changed_agrees_with_the_full_person_scorer(
    r: tuple[str, ...], data: st.DataObject, s: MatchSettings
) -> None:
    """The usual close match: the registered words with one replaced (a typo, an initial, a
    nickname, another word) and perhaps shuffled: one word left on each side."""
    at = data.draw(st.integers(0, len(r) - 1))
    q = list(r)
    q[at] = data.draw(TOKEN | st.just(r[at][:1]) | st.just(r[at][:-1] or "x"))
    q = data.draw(st.permutations(q))
    assert score_person(q, r, s) == score_person_full(q, r, s)


@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=6, unique=True).map(sorted),
    st.lists(st.integers(0, 6), min_size=1, max_size=6, unique=True).map(sorted),
    st.booleans(),
    st.data(),
)
@settings(max_examples=1200)
def test_pair_search_shortcuts_agree_with_the_permutation_search(
    qi: list[int], rj: list[int], sparse: bool, data: st.DataObject
) -> None:
    """The plain scan for one leftover word on a side, and the answer without a search for no or
    one live pair (sparse candidates, mostly kind 4, as in a no-match), give the permutation
    search's answer (up to four leftovers a side; more go greedy either way)."""
    assume((len(qi) <= 4 and len(rj) <= 4) or len(qi) == 1 or len(rj) == 1)
    kinds = st.tuples(st.integers(0, 4), st.integers(0, 2))  # (kind, edits); 4 = no pair
    if sparse:
        kinds = st.one_of(st.just((4, 0)), st.just((4, 0)), kinds)
    cand = {(i, j): data.draw(kinds) for i in qi for j in rj}
    assert best_pairs(qi, rj, cand) == best_pairs(qi, rj, cand, general=True)


ENDINGS = st.sampled_from([DEFAULT_SETTINGS, MatchSettings(gendered_endings=(("", "a"), ("ek", "ka")))])


@given(TOKEN, TOKEN, ENDINGS)
@settings(max_examples=500)
def test_gendered_ending_prefilter_changes_nothing(q: str, r: str, s: MatchSettings) -> None:
    brute = any(
        x.endswith(a) and y.endswith(b) and x[: len(x) - len(a)] == y[: len(y) - len(b)]
        for a, b in s.gendered_endings
        for x, y in ((q, r), (r, q))
    )
    assert _gendered(q, r, s) == brute


def _compare_tokens_reference(q: str, r: str, s: MatchSettings) -> tuple[int, int]:
    """``compare_tokens`` written out step by step from its documented rules (the scorer inlines
    the umlaut handling)."""
    if tokens_equal(q, r):
        return 0, 0
    if are_variants(q, r):
        return 1, 0
    qa, qe = umlaut_forms(q)
    ra, re_ = umlaut_forms(r)
    if (len(q) == 1 and ra.startswith(qa)) or (len(r) == 1 and qa.startswith(ra)):
        return (2, 0) if s.allow_initials else (4, 0)
    if len(q) == 1 or len(r) == 1:
        return 4, 0
    allow = edit_allowance(len(ra), s)
    if allow <= 0 or (s.typo_keep_first_letter and qa[0] != ra[0]):
        return 4, 0
    d = min(OSA.distance(qa, ra), OSA.distance(qe, re_))
    if d > allow or (s.refuse_typo_between_known_names and is_known_name(q) and is_known_name(r)):
        return 4, 0
    return (4, 0) if _gendered(qa, ra, s) else (3, d)


@given(TOKEN, TOKEN | st.sampled_from(["mueller", "muller", "jana", "wiliam", "nowakowa"]), PERSON_SETTINGS)
@settings(max_examples=1500)
def test_compare_tokens_follows_its_rules(q: str, r: str, s: MatchSettings) -> None:
    assert compare_tokens.__wrapped__(q, r, s) == _compare_tokens_reference(q, r, s)


def _mark_forms_reference(tokens: list[str], marker: str) -> list[str]:
    """``legal_forms.mark_forms`` without its prefix/suffix pre-filters: every key length tried."""
    forms = legal_forms.load()
    if len(tokens) < 2:
        return tokens

    def find(words: list[str], at_end: bool, stop: frozenset[str]) -> tuple[int, str] | None:
        n = len(words)
        for k in range(min(forms.max_tokens, n - 1), 0, -1):
            key = "".join(words[n - k :] if at_end else words[:k])
            hit = forms.lookup(key)
            if hit is not None and key not in stop:
                return k, hit
        return None

    out = tokens
    end = find(out, True, legal_forms.END_STOP)
    if end is not None:
        out = [*out[: len(out) - end[0]], marker + end[1]]
    body_len = len(out) - (1 if end is not None else 0)
    start = find(out[:body_len], False, legal_forms.START_STOP) if body_len >= 2 else None
    if start is not None:
        out = [marker + start[1], *out[start[0] :]]
    return out


FORM_WORDS = st.sampled_from(
    [
        "gmbh",
        "gesellschaft",
        "mit",
        "beschränkter",
        "haftung",
        "sp",
        "z",
        "oo",
        "sa",
        "de",
        "cv",
        "kg",
        "co",
        "ag",
        "la",
        "bv",
        "s",
        "r",
        "o",
        "ltd",
        "limited",
        "oy",
        "ab",
        "ä",
        "aktiengesellschaft",
    ]
)


@given(st.lists(FORM_WORDS | st.text(st.sampled_from("abgmsäö"), min_size=1, max_size=4), max_size=7))
@settings(max_examples=1500)
def test_legal_form_prefilters_change_nothing(tokens: list[str]) -> None:
    assert legal_forms.mark_forms(tokens, "#") == _mark_forms_reference(tokens, "#")


PERSON_NAME = st.builds(lambda first, last: f"{first} {last}", FIRST, LAST)
NAME_TEXT = (
    PERSON_NAME
    | st.builds(lambda t, n: f"{t} {n}", TITLE, PERSON_NAME)
    | RAW
    | st.sampled_from(
        ["-", ".", "", "Anna und Jan Nowak", "Nowak, Anna", "dr", "&", "Anna Nowak", "ANNA NOWAK"]
    )
)


@given(
    st.lists(
        st.tuples(
            NAME_TEXT,
            st.sampled_from(["person", "organisation"]),
            st.lists(NAME_TEXT | st.builds(lambda w, f: f"{w} {f}", ORG_WORD, FORM), min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=12,
    )
)
@example([("x", "person", ["Anna Nowak", "ANNA NOWAK"]), ("x", "organisation", ["Alfa GmbH", "ALFA GMBH"])])
@example([("x", "person", ["Anna und Jan Nowak"])])  # one item: the lone-check path
@example([("x", "person", ["-"])])
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_batch_decisions_equal_decide_one(items: list[tuple[str, str, list[str]]]) -> None:
    """decide_names (with its inline exact-match paths) answers as decide_one does, item by item;
    queries are often one of the registered names (the first or another), so the inline paths are
    taken."""
    queries = [q if i % 3 == 2 else regs[i % len(regs)] for i, (q, _, regs) in enumerate(items)]
    kinds = [k for _, k, _ in items]
    registered = [regs for _, _, regs in items]
    prepared = [prepare_registered(regs, [k] * len(regs)) for _, k, regs in items]
    expected = [decide_one(fold(q), k, p) for q, k, p in zip(queries, kinds, prepared, strict=True)]
    assert decide_names(queries, kinds, registered, prepared) == expected
