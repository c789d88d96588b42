"""Every threshold of the name-matching policy, in one frozen settings object."""

from __future__ import annotations

import msgspec

__all__ = ["DEFAULT_SETTINGS", "MatchSettings"]


class MatchSettings(msgspec.Struct, frozen=True, cache_hash=True):
    """Thresholds of the matcher. The defaults are the tuned policy (DESIGN.md §2). (The hash is
    cached: every ``compare_tokens`` cache look-up hashes the settings.)

    Edit allowance per token, by the length of the *registered* token:
    ``typo_max_edits_short`` below ``typo_medium_min_len`` (a one-letter change in a two- or
    three-letter name is another name), ``typo_max_edits_medium`` up to ``typo_long_min_len``,
    ``typo_max_edits_long`` from there on.
    """

    typo_max_edits_short: int = 0
    typo_medium_min_len: int = 4
    typo_max_edits_medium: int = 1
    typo_long_min_len: int = 7
    typo_max_edits_long: int = 2
    #: A typo never changes the first letter: Jansen / Hansen, Sandberg / Lindberg are other names.
    typo_keep_first_letter: bool = True
    #: A close match allows this many deviations (a typo, a nickname, initials, a missing or an
    #: extra middle name, a split/joined word); more than that is another name.
    max_deviations_person: int = 1
    #: Same for organisations (a typo, another word order, a different legal form, …).
    max_deviations_org: int = 1
    #: First (or middle) names given as initials ("P. Lindqvist") are a close match.
    allow_initials: bool = True
    #: Two different known names are never a typo of each other (Sebastian / Sébastien, Novák / Nowak).
    refuse_typo_between_known_names: bool = True
    #: Endings that make another person's name, not a typo (male/female forms: Kowalski/Kowalska,
    #: Novotný/Novotná, Ivanov/Ivanova, Papadopoulos/Papadopoulou, Francesco/Francesca). Bare
    #: added/removed letters are left out: dropping a last letter is a common typo; gendered
    #: given names of that kind (Daniel/Daniela) are caught by the known-given-name list.
    gendered_endings: tuple[tuple[str, str], ...] = (
        ("ski", "ska"),
        ("cki", "cka"),
        ("dzki", "dzka"),
        ("sky", "ska"),
        ("cky", "cka"),
        ("y", "a"),
        ("ov", "ova"),
        ("ev", "eva"),
        ("in", "ina"),
        ("os", "ou"),
        ("o", "a"),
        ("e", "a"),
    )
    #: Split/joined words are tried in every order up to this many leftover query words.
    spacing_max_tokens: int = 3


DEFAULT_SETTINGS = MatchSettings()
