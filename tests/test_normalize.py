"""One test per normalisation step (matching/normalize.py)."""

from __future__ import annotations

import pytest

from matching.normalize import fold, fold_many, person_holders, prepare_query, prepare_registered


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("MAX MUSTERMANN", "max mustermann"),  # case
        ("Sébastien Lefèvre", "sebastien lefevre"),  # diacritics
        ("Großmann", "grossmann"),  # ß → ss
        ("Æble Ærø", "aeble aero"),  # æ → ae, ø → o
        ("Łódź", "lodz"),  # ł → l
        ("Đurić", "duric"),  # đ → d
        ("Þór", "thor"),  # þ → th
        ("Müller", "müller"),  # German umlaut kept for the scorer (ü = u = ue)
        ("Citroën", "citroen"),  # plain diaeresis folds
        ("ﬁnn", "finn"),  # NFKC compatibility forms
        ("O'Sullivan", "osullivan"),  # apostrophes join
        ("D’Angelo", "dangelo"),
        ("Jean-Pierre", "jean pierre"),  # hyphens split
        ("  Katharina   Martínez.  ", "katharina martinez"),  # spacing and trailing dot
        ("B.V.", "bv"),  # dots inside abbreviations vanish
        ("Dr.Müller", "dr müller"),  # a dot before a word separates
        ("Dubois,Mette", "dubois , mette"),  # comma is a token
        ("Müller & Söhne", "müller & söhne"),  # & is a token
    ],
)
def test_fold_steps(raw: str, folded: str) -> None:
    assert fold(raw) == folded
    assert fold_many([raw], batched=True) == [folded]


def test_titles_are_stripped_at_the_start() -> None:
    for raw in (
        "Prof. Dr. Gonçalo Nowak",
        "Herr Gonçalo Nowak",
        "Mme Gonçalo Nowak",
        "Sr. Gonçalo Nowak",
        "Dhr. Gonçalo Nowak",
        "Ing. Mag. Gonçalo Nowak",
        "Sig.ra Gonçalo Nowak",
        "Pani Gonçalo Nowak",
    ):
        assert prepare_query(raw, "person") == "goncalo nowak", raw


def test_title_is_kept_when_nothing_else_is_left() -> None:
    assert prepare_query("Dr", "person") == "dr"


def test_french_m_is_an_initial_unless_two_names_follow() -> None:
    assert prepare_query("M. Dupont", "person") == "m dupont"
    assert prepare_query("M. Jean Dupont", "person") == "jean dupont"


def test_particles_count_as_part_of_the_surname_for_the_m_rule() -> None:
    assert prepare_query("M. da Silva", "person") == "m dasilva"


def test_surname_first_with_comma_is_reordered() -> None:
    assert prepare_query("Dubois, Mette", "person") == "mette dubois"
    assert prepare_query("Dubois, Dr. Mette", "person") == "mette dubois"


def test_particles_are_glued_to_the_surname() -> None:
    assert prepare_query("Pieter van den Berg", "person") == "pieter vandenberg"
    assert prepare_query("Ángela de Vries", "person") == "angela devries"
    assert prepare_query("L. de Vries", "person") == "l devries"  # one-letter tokens stay initials


def test_joint_connectors_split_holders_and_share_the_surname() -> None:
    for conn in ("und", "and", "et", "y", "e", "en", "och", "og", "i", "&"):
        assert person_holders(fold(f"Ioana {conn} Henrik Martínez")) == (
            ("ioana", "martinez"),
            ("henrik", "martinez"),
        ), conn


def test_connector_inside_a_compound_surname_is_kept() -> None:
    assert prepare_query("José Ortega y Gasset", "person") == "jose ortega y gasset"


def test_prepare_registered_marks_legal_forms_for_organisations_only() -> None:
    out = prepare_registered(
        ["Nordlicht Logistik GmbH", "Per As", "AB Volvo"], ["organisation", "person", "organisation"]
    )
    assert out == ["nordlicht logistik #gmbh", "per as", "#ab volvo"]


def test_prepare_registered_batch_paths_agree() -> None:
    names = ["Zuzana Ó Briain", "Bäckerei Sonnenschein S.R.L.", "Dubois, Mette"] * 1000
    kinds = ["person", "organisation", "person"] * 1000
    assert fold_many(names, batched=True) == fold_many(names, batched=False)
    assert prepare_registered(names, kinds)[:3] == [
        "zuzana o briain",
        "bäckerei sonnenschein #srl",
        "mette dubois",
    ]


def test_prepare_registered_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="differ"):
        prepare_registered(["a"], [])
