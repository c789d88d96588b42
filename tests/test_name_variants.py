"""Given-name variants (matching/name_variants.py)."""

from __future__ import annotations

from matching.name_variants import are_variants, is_known_given_name, is_known_name


def test_english_pairs_work_in_both_directions() -> None:
    assert are_variants("william", "bill")
    assert are_variants("bill", "william")
    assert are_variants("elizabeth", "liz")


def test_names_sharing_a_nickname_are_not_variants() -> None:
    assert are_variants("robert", "bob")
    assert not are_variants("william", "robert")


def test_eu_supplement_short_forms() -> None:
    for name, short in [
        ("johannes", "hans"),
        ("josef", "sepp"),
        ("francisco", "paco"),
        ("jose", "pepe"),
        ("giuseppe", "beppe"),
        ("katarzyna", "kasia"),
        ("malgorzata", "gosia"),
        ("elisabeth", "ilse"),
        ("aleksander", "olek"),
        ("margaretha", "greet"),
    ]:
        assert are_variants(short, name), (short, name)


def test_umlaut_spellings_are_both_known() -> None:
    assert are_variants("jürgen", "jörg")
    assert are_variants("juergen", "joerg")


def test_known_given_names() -> None:
    assert is_known_given_name("sebastian")
    assert is_known_given_name("sebastien")
    assert not is_known_given_name("kowalski")


def test_known_surnames_in_every_spelling() -> None:
    assert is_known_name("nowak")
    assert is_known_name("novak")  # Novák folded
    assert is_known_name("mueller")
    assert is_known_name("müller")
    assert not is_known_given_name("nowak")
    assert not is_known_name("xqzt")
