"""Sample EU names shared by the matcher micro-benchmark and the matcher's property tests: given
names, surnames (with particles and diacritics) and organisation words. The property tests add
their own edge cases (two-letter tokens, apostrophes) on top."""

from __future__ import annotations

FIRST_NAMES = [
    "Lucía", "Pieter", "Mette", "Anouk", "Mihai", "Sébastien", "Gonçalo", "Siobhán", "Jürgen", "Tomáš",
    "Ioana", "Björn", "Krzysztof", "Ángela", "Søren", "Zuzana", "Päivi", "Wojciech", "Giuseppe", "László",
]  # fmt: skip
SURNAMES = [
    "Popescu", "Krüger", "Wiśniewska", "Jørgensen", "Martínez", "Dvořáková", "Weißmann", "Öberg", "Szabó",
    "Lefèvre", "Ó Briain", "de Vries", "van den Berg", "Müller", "Schäfer", "García", "Nowak", "Esposito",
]  # fmt: skip
ORG_WORDS = [
    "Harbour",
    "Seafoods",
    "Nordlicht",
    "Logistik",
    "Vinhos",
    "Douro",
    "Atelier",
    "Lumière",
    "Bäckerei",
]
