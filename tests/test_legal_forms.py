"""Legal forms: data file, each family, position rules (matching/legal_forms.py)."""

from __future__ import annotations

from importlib import resources

import pytest

from matching import legal_forms
from matching.normalize import prepare_query
from matching.policy import decide_names


def _org(registered: str, query: str) -> tuple[str, str]:
    from matching.normalize import prepare_registered

    d = decide_names(
        [query], ["organisation"], [[registered]], [prepare_registered([registered], ["organisation"])]
    )[0]
    return d.code, d.reason


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("GmbH", "Gesellschaft mit beschränkter Haftung"),  # DE AT CH
        ("GmbH", "Gesellschaft mit beschraenkter Haftung"),
        ("AG", "Aktiengesellschaft"),
        ("B.V.", "Besloten Vennootschap"),  # NL BE
        ("Sp. z o.o.", "Spółka z ograniczoną odpowiedzialnością"),  # PL
        ("s.r.o.", "společnost s ručením omezeným"),  # CZ (supplement)
        ("Kft.", "korlátolt felelősségű társaság"),  # HU
        ("SRL", "Societate cu răspundere limitată"),  # RO
        ("S.L.", "Sociedad Limitada"),  # ES
        ("Lda", "Sociedade por Quotas Limitada"),  # PT
        ("Ltd", "Limited"),  # UK IE
        ("ApS", "Anpartsselskab"),  # DK
        ("AB", "Aktiebolag"),  # SE FI
        ("Oy", "Osakeyhtiö"),  # FI
        ("S.A.", "Société Anonyme"),  # FR BE LU CH
        ("SARL", "Société à responsabilité limitée"),  # FR (supplement)
        ("EPE", "Etería Periorisménis Euthínis"),  # GR in Latin transliteration
        ("AS", "Aksjeselskap"),  # NO
        ("d.o.o.", "družba z omejeno odgovornostjo"),  # SI
        ("UAB", "uždaroji akcinė bendrovė"),  # LT (supplement: ELF has the genitive plural)
        ("SIA", "sabiedrība ar ierobežotu atbildību"),  # LV
        ("OÜ", "osaühing"),  # EE
        ("N.V.", "naamloze vennootschap"),
    ],
)
def test_short_and_long_forms_are_the_same_form(short: str, long: str) -> None:
    assert legal_forms.canonical_of(prepare_query(short, "person")) == legal_forms.canonical_of(
        prepare_query(long, "person")
    )
    assert _org(f"Harbour Seafoods {short}", f"Harbour Seafoods {long}") == ("MTCH", "exact")


@pytest.mark.parametrize("written", ["B.V.", "BV", "b.v.", "B. V.", "bv"])
def test_dots_and_spaces_are_dropped(written: str) -> None:
    assert prepare_query(f"Vinhos do Douro {written}", "organisation") == "vinhos do douro #bv"


def test_polish_form_written_every_way() -> None:
    for written in ("Sp. z o.o.", "sp z oo", "SP. Z O.O.", "sp. z o. o."):
        assert prepare_query(f"Costruzioni Adriatica {written}", "organisation").endswith("#spzoo"), written


def test_form_at_the_start_is_recognised() -> None:
    assert _org("Volvo AB", "AB Volvo") == ("MTCH", "exact")


def test_form_in_the_middle_is_part_of_the_name() -> None:
    assert prepare_query("Építőipari Kft Duna S.A.", "organisation") == "epitoipari kft duna #sa"


def test_same_abbreviation_in_two_countries_is_the_same_form() -> None:
    # SA: ES sociedad anónima, FR société anonyme, PL spółka akcyjna — different ELF codes
    assert _org("Transportes Rápidos S.A.", "Transportes Rápidos Société Anonyme") == ("MTCH", "exact")


def test_different_form_is_a_close_match_and_missing_form_a_match() -> None:
    assert _org("Nordlicht Logistik GmbH", "Nordlicht Logistik AG") == ("CMTC", "legal_form_differs")
    assert _org("Stavební Firma Brno ApS", "Stavební Firma Brno A/S") == ("CMTC", "legal_form_differs")
    assert _org("Nordlicht Logistik GmbH", "Nordlicht Logistik") == ("MTCH", "legal_form_missing")


def test_short_forms_that_are_words_are_never_stripped_from_persons() -> None:
    for name in ("Ana Sa", "Per As", "Li Ab", "Jan Oy"):
        assert prepare_query(name, "person") == name.lower()


def test_the_name_itself_is_never_stripped_away() -> None:
    assert prepare_query("GmbH", "organisation") == "gmbh"
    assert prepare_query("AG GmbH", "organisation") == "ag #gmbh"


def test_start_stop_words_are_not_forms() -> None:
    assert prepare_query("Da Vinci Restaurant", "organisation") == "da vinci restaurant"


def test_glued_abbreviations_of_the_elf_list_are_split() -> None:
    # DE 8Z6G lists "UG (haftungsbeschränkt) & Co. KG AG & Co. KG" without a ';'
    assert prepare_query("Nordlicht UG (haftungsbeschränkt) & Co. KG", "organisation") == "nordlicht #kg"
    assert prepare_query("Nordlicht AG & Co. KG", "organisation") == "nordlicht #kg"


def test_data_file_and_attribution_ship_together() -> None:
    data = resources.files("matching").joinpath("data")
    header = data.joinpath("legal_forms.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "key,canonical,tokens,kind,countries,elf_codes,source"
    readme = data.joinpath("README.md").read_text(encoding="utf-8")
    assert "78b84c9935b91c83bccbfea523525a8b9a0aae97" in readme
    assert "Apache" in readme
