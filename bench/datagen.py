"""Deterministic demo data: account snapshots (DESIGN.md §3 contract) and probes with known answers.

``generate_accounts(n)`` builds a realistic account table — persons and organisations from 16 EU
countries, country-typical names with diacritics and particles, joint accounts, legal forms written
in their usual variants, trade names, LEIs, BICs and scheme-coded organisation ids, valid IBANs —
fully vectorised (numpy + Arrow compute): about 2.6 s and 450 MB peak RSS per million rows.

Rows are generated in fixed chunks of ``CHUNK_ROWS``; every random draw of a chunk is made for the
whole chunk and depends only on ``(seed, chunk index)``, so the first ``k`` rows of
``generate_accounts(n)`` equal ``generate_accounts(k)`` and the same ``(n, seed)`` always gives the
same table. IBANs are unique by construction: ten account digits of every BBAN are a bijection of
the row number, not a random draw.

``generate_probes(table, n)`` draws queries whose correct answer under the DESIGN.md §2 policy is
unambiguous (exact / case-changed name → MTCH, one clear typo or an initial → CMTC, an unrelated
name → NMTC, an IBAN not held or an inactive account → NOAP), for load tests and benchmarks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rapidfuzz.distance import Levenshtein

from matching.iban import IBAN_LENGTHS
from matching.sources.parquet import ROW_GROUP_ROWS, SNAPSHOT_SCHEMA, write_atomically

DEMO_SEED: Final = 20251009
DEMO_BIC: Final = "VOPBDEFFXXX"  # the responder's own demo BIC

CHUNK_ROWS: Final = 65_536
MAX_ROWS: Final = 2**32  # the row-number bijections below are defined on [0, 2**32)


DEFAULT_PROBE_MIX: Final[Mapping[str, float]] = {
    "exact": 0.60,
    "close": 0.20,
    "no_match": 0.15,
    "unknown_iban": 0.05,
}
PROBE_CATEGORIES: Final = ("exact", "close", "no_match", "unknown_iban", "inactive")
_EXPECTED: Final = {
    "exact": "MTCH",
    "close": "CMTC",
    "no_match": "NMTC",
    "unknown_iban": "NOAP",
    "inactive": "NOAP",
}

# Shares (fractions of all accounts unless said otherwise).
P_ORGANISATION: Final = 0.30
P_CLOSED: Final = 0.03
P_BLOCKED: Final = 0.01
P_JOINT_PERSON: Final = 0.115  # of persons: about 8 % of all accounts
P_JOINT_SAME_SURNAME: Final = 0.75
P_JOINT_MIXED: Final = 0.80  # holders of opposite gender
P_MIDDLE: Final = 0.10  # of holders
P_TITLE: Final = 0.015  # of holders
P_SECOND_SURNAME: Final = 0.70  # of ES/PT holders
P_TRADE_1: Final = 0.07  # of organisations
P_TRADE_2: Final = 0.03  # of organisations
P_LEI: Final = 0.80  # of organisations
P_BIC: Final = 0.15  # of organisations
P_DUNS: Final = 0.20  # of organisations
P_HOME_IBAN: Final = 0.93  # IBAN country = holder country


# --------------------------------------------------------------------------------------------------
# Country data. Lists are "|"-separated; a surname "Novák/Nováková" has a male and a female form.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Country:
    code: str
    weight: float
    male: str
    female: str
    surnames: str
    sectors: str
    brands: str
    legal_forms: str  # repeated entries weight the common spellings
    vat: str  # template: '#' a random digit, other characters literal
    titles: str = "Dr.|Dr.|Prof. Dr."
    # BBAN = bank prefix (one of banks) + `fill` random digits + 10 row digits (+ national check)
    banks: str = ""
    fill: int = 0
    alpha: int = 0  # random capital letters before the bank prefix (the Italian CIN)
    tail: str = ""  # "" | "be" (BE mod-97 pair) | "fr" (RIB key) | "rand2" (two random digits)


# fmt: off
_COUNTRIES: Final[tuple[_Country, ...]] = (
    _Country(
        "DE", 0.20,
        "Lukas|Jürgen|Jörg|Günther|Sören|Björn|Maximilian|Johannes|Matthias|Thorsten|Wolfgang|Stefan"
        "|Andreas|Florian|Tobias|Felix|Jonas|Dieter|Uwe|Klaus|Henning|Malte|Ulrich|Reinhard|Christoph",
        "Katharina|Anna|Lea|Sophie|Jana|Ursula|Sabine|Birgit|Jutta|Gisela|Hannelore|Brigitte|Franziska"
        "|Johanna|Charlotte|Annegret|Dörte|Käthe|Friederike|Mareike|Svenja|Ilse|Heike|Henrike|Lena",
        "Müller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Schulz|Hoffmann|Schäfer|Koch|Bauer"
        "|Richter|Klein|Wolf|Schröder|Neumann|Schwarz|Zimmermann|Braun|Krüger|Hartmann|Lange|Werner"
        "|Krause|Köhler|Weiß|Groß|Jäger|Böhm|Vogel|Weißmann|Friedrich|Großmann|Löwenstein|Scholz"
        "|von Bülow|Brandenburger|Oberländer|Kießling|Düsterhöft|Fleischhauer|Schwarzkopf",
        "Logistik|Bau|Immobilien|Software|Maschinenbau|Elektrotechnik|Handelshaus|Steuerberatung"
        "|Bäckerei|Metallbau|Spedition|Autohaus|Gartenbau|Medizintechnik|Verpackungen|Druckerei",
        "Nordlicht|Alpenblick|Sonnenschein|Rheinwerk|Elbtal|Spreewald|Lindenhof|Eichenwald|Bergquell"
        "|Morgenrot|Weitblick|Sternwarte|Hansekontor|Mühlbach|Birkenhain",
        "GmbH|GmbH|GmbH|GmbH|AG|AG|GmbH & Co. KG|KG|e.K.|UG (haftungsbeschränkt)|OHG"
        "|Gesellschaft mit beschränkter Haftung",
        "DE#########",
        banks="10070000|20040000|37040044|50010517|70020270|43060967|12030000|76026000",
    ),
    _Country(
        "FR", 0.14,
        "Jean|François|Théo|Mathéo|Joël|Jérôme|Stéphane|Benoît|Sébastien|Guillaume|Olivier|Nicolas"
        "|Thierry|Frédéric|Aurélien|Gaëtan|Rémi|Hervé|Clément|Antoine|Émile|Lucien",
        "Hélène|Cécile|Chloé|Zoé|Léa|Noémie|Gaëlle|Amélie|Élodie|Camille|Manon|Pauline|Béatrice"
        "|Océane|Agnès|Mélanie|Juliette|Margaux|Anaïs|Solène|Geneviève|Thérèse",
        "Martin|Bernard|Dubois|Thomas|Robert|Richard|Petit|Durand|Leroy|Moreau|Lefèvre|Lefebvre"
        "|Girard|Bonnet|Mercier|Fontaine|Rousseau|Lemaître|de la Fontaine|Le Gall|Dupont|Deschênes"
        "|Gauthier|Barbier|Chevalier|Delacroix|Beaumarchais|Desjardins|Courtois|Lévêque|Bérénger"
        "|Château|Poirier|Marchand|Dumont|Boucher|Montgolfier",
        "Boulangerie|Transports|Conseil|Immobilier|Informatique|Bâtiment|Distribution|Pâtisserie"
        "|Menuiserie|Architectes|Assurances|Ingénierie|Restauration|Électricité",
        "Horizon|Lumière|Atlantique|Méridien|Étoile|Provence|Bellevue|Alizé|Azur|Lavande|Océanis"
        "|Cristal|Hexagone|Sommet",
        "SARL|SARL|SARL|SAS|SAS|S.A.S.|S.A.|SA|EURL|SCI|Société à responsabilité limitée",
        "FR",  # FR VAT is built from the SIREN (see _vat_strings)
        titles="Dr|Dr.|Pr.",
        banks="3000400828|3000301234|1020700001|2004101005|3006610021|1820600060",
        fill=1, tail="fr",
    ),
    _Country(
        "NL", 0.08,
        "Daan|Sem|Pieter|Joost|Bram|Maarten|Thijs|Ruud|Jeroen|Wouter|Sjoerd|Gerrit|Teun|Hendrik"
        "|Willem|Jurriaan|Stijn|Koen",
        "Lieke|Sanne|Anouk|Femke|Eline|Marieke|Annelies|Sietske|Janneke|Fleur|Mirjam|Ilse|Geertje"
        "|Noor|Roos|Jolien|Wilhelmina",
        "de Vries|van den Berg|van Dijk|Bakker|Janssen|Visser|Smit|de Jong|Jansen|de Boer|Mulder"
        "|van der Meer|Bos|Vos|Hendriks|van Leeuwen|Dekker|Brouwer|de Wit|Dijkstra|van der Linden"
        "|Kok|de Haan|Vermeulen|van den Broek|Schouten|Hoekstra|Koopmans|Groenewegen|van Oosterhout"
        "|Timmermans|Vanderhoeven",
        "Techniek|Bouw|Installatie|Transport|Adviesbureau|Bloemenhandel|Vastgoed|Handelsonderneming"
        "|Accountants|Schilderwerken|Logistiek",
        "Zeewind|Polderland|Duinzicht|Tulpenveld|Waterkant|Lichtbaken|Molenaar|Deltaplan|Oranjehof",
        "B.V.|B.V.|BV|BV|N.V.|V.O.F.|Besloten Vennootschap",
        "NL#########B0#",
        titles="Dr.|Dr.|Prof. Dr.",
        banks="ABNA|INGB|RABO|TRIO|SNSB|KNAB|BUNQ|ASNB",
    ),
    _Country(
        "ES", 0.10,
        "José|Javier|Álvaro|Martín|Íñigo|Joaquín|Raúl|Sebastián|Andrés|Rubén|Adrián|Jesús|Ramón"
        "|Fernando|Ignacio|Alejandro|Nicolás|Víctor|Óscar|Gonzalo",
        "Lucía|María|Sofía|Begoña|Inés|Ainhoa|Maite|Mónica|Verónica|Raquel|Nuria|Montserrat|Almudena"
        "|Pilar|Rocío|Consuelo|Dolores|Concepción|Ángela|Marisol",
        "García|Martínez|López|Sánchez|Pérez|Gómez|Fernández|Rodríguez|González|Jiménez|Ruiz"
        "|Hernández|Díaz|Muñoz|Álvarez|Romero|Navarro|Domínguez|Gutiérrez|Ibáñez|Núñez|Castaño"
        "|de la Cruz|Vázquez|Echeverría|Santamaría|Villanueva|Zubizarreta|Peñalver|Calderón",
        "Construcciones|Transportes|Distribuciones|Inmobiliaria|Consultoría|Alimentación|Talleres"
        "|Asesores|Instalaciones|Ingeniería|Panadería",
        "Mediterráneo|Iberia|Sierra|Alborán|Castellana|Horizonte|Levante|Olivares|Solana|Cantábrico",
        "S.L.|S.L.|SL|S.A.|SA|S.L.U.|Sociedad Limitada",
        "ESB########",
        titles="Dr.|Dr.|Sr.|Sra.",
        banks="21000418|00491500|20852066|01822370|00810216|14650100",
        fill=2,
    ),
    _Country(
        "IT", 0.10,
        "Giuseppe|Giovanni|Alessandro|Niccolò|Lorenzo|Matteo|Francesco|Andrea|Marco|Davide|Stefano"
        "|Federico|Gianluca|Massimo|Salvatore|Vincenzo|Pasquale|Raffaele|Leonardo|Tommaso",
        "Francesca|Chiara|Giulia|Martina|Federica|Alessandra|Valentina|Elisabetta|Serena|Beatrice"
        "|Ludovica|Antonella|Graziella|Donatella|Annunziata|Rosaria|Caterina|Benedetta",
        "Rossi|Russo|Ferrari|Esposito|Bianchi|Romano|Colombo|Ricci|Marino|Greco|Bruno|Gallo|Conti"
        "|De Luca|Mancini|Costa|Giordano|Rizzo|Lombardi|Moretti|D'Angelo|Di Stefano|Fabbri|Santoro"
        "|Santangelo|Bernardini|Castellani|Mastroianni|Lombardozzi|Caruso|Pellegrini|Marchetti",
        "Costruzioni|Trasporti|Ristorante|Immobiliare|Informatica|Alimentari|Arredamenti|Consulenze"
        "|Impianti|Tipografia|Calzaturificio",
        "Belvedere|Aurora|Adriatica|Dolomiti|Tramonto|Girasole|Serenissima|Vesuvio|Oliveto|Laguna",
        "S.r.l.|S.r.l.|SRL|Srl|S.p.A.|SpA|S.n.c.|S.a.s.|Società a responsabilità limitata",
        "IT###########",
        titles="Dr.|Dott.|Ing.",
        banks="0306909606|0200802435|0538712900|0103002800|0306901783",
        fill=2, alpha=1,
    ),
    _Country(
        "AT", 0.05,
        "Alois|Florian|Leopold|Lukas|Johann|Franz|Gerhard|Josef|Stefan|Markus|Andreas|Herbert"
        "|Günter|Reinhold|Ferdinand|Valentin",
        "Valentina|Theresa|Magdalena|Elisabeth|Christina|Katharina|Anna|Maria|Johanna|Monika|Brigitte"
        "|Hildegard|Rosemarie|Veronika",
        "Gruber|Huber|Bauer|Wagner|Pichler|Steiner|Moser|Mayer|Hofer|Leitner|Berger|Fuchs|Eder"
        "|Fischer|Schmid|Winkler|Weber|Schwarz|Maier|Reiter|Mayr|Brunner|Wimmer|Egger|Lechner|Haas"
        "|Strauß|Wöhrer|Pöschl|Hinterberger|Oberhuber|Niederwieser|Kleinschmidt",
        "Holzbau|Tischlerei|Installationen|Transporte|Immobilien|Gastronomie|Elektrotechnik"
        "|Baumeister|Steuerberatung",
        "Alpenland|Donauwelle|Tauernblick|Wienerwald|Edelweiß|Gipfelkreuz|Bergkristall|Kärntnerhof",
        "GmbH|GmbH|GmbH|AG|KG|OG|e.U.|Gesellschaft mit beschränkter Haftung",
        "ATU########",
        titles="Dr.|Mag.|Ing.",
        banks="12000|20111|32000|14000|19043|60000",
        fill=1,
    ),
    _Country(
        "BE", 0.05,
        "Wout|Arne|Maxime|Thibault|Jef|Stijn|Ruben|Pieter|Koen|Bart|Dries|Jens|Gilles|Cédric|Lucas"
        "|Benoît|Nathan|Kobe",
        "Lotte|Manon|Amélie|Elise|Fien|Lore|Hanne|Ine|Marthe|Émilie|Charlotte|Céline|Anaïs|Nele|Jolien"
        "|Sofie",
        "Peeters|Janssens|Maes|Jacobs|Mertens|Willems|Claes|Goossens|Wouters|De Smet|Dubois|Lambert"
        "|Dupont|Van Damme|Vandenberghe|De Backer|Lemaire|Verhoeven|Van de Velde|Desmet|Michiels"
        "|Hermans|Vanderstraeten|Van Hoorebeke|Deschuytter|Verstraeten|Goethals",
        "Bouwwerken|Transport|Consultancy|Brasserie|Chocolaterie|Immobiliën|Schrijnwerkerij|Logistics"
        "|Accountancy",
        "Vlaanderen|Ardennes|Meuse|Brabant|Kempenland|Zonnebloem|Bruxelles|Scheldezicht",
        "BV|BV|BV|SRL|SRL|NV|SA|CommV|Besloten Vennootschap",
        "BE0#########",
        titles="Dr.|Dr.|Prof. Dr.",
        tail="be",
    ),
    _Country(
        "PT", 0.04,
        "João|Gonçalo|Tomás|Rodrigo|Sebastião|André|Duarte|Afonso|Simão|Luís|Rui|Nuno|Vasco|Joaquim"
        "|Henrique|Vítor",
        "Inês|Beatriz|Mariana|Leonor|Luísa|Matilde|Constança|Margarida|Carolina|Joana|Raquel|Filipa"
        "|Madalena|Catarina|Lúcia",
        "Silva|da Silva|Santos|Ferreira|Pereira|Oliveira|Costa|Rodrigues|Martins|Sousa|Fernandes"
        "|Gonçalves|Gomes|Lopes|Marques|Alves|Almeida|Ribeiro|Pinto|Carvalho|Teixeira|Magalhães"
        "|dos Santos|Conceição|Simões|Assunção|Albuquerque|Figueiredo|Vasconcelos",
        "Construções|Transportes|Restaurante|Imobiliária|Informática|Comércio|Pastelaria|Serralharia"
        "|Contabilidade|Distribuição",
        "Atlântico|Lusitânia|Tejo|Algarve|Douro|Miradouro|Oceano|Estrela|Ribeira",
        "Lda|Lda|Lda.|Unipessoal Lda|S.A.|SA|Sociedade por Quotas",
        "PT#########",
        titles="Dr.|Dra.|Eng.",
        banks="00070000|00350001|00330000|00180003|00360000|00100000",
        fill=1, tail="rand2",
    ),
    _Country(
        "IE", 0.04,
        "Ciarán|Seán|Pádraig|Eoin|Cillian|Conor|Declan|Oisín|Colm|Darragh|Tadhg|Ruairí|Diarmuid"
        "|Fionn|Cathal",
        "Siobhán|Aoife|Niamh|Róisín|Saoirse|Orla|Gráinne|Clodagh|Sinéad|Áine|Caoimhe|Méabh|Éabha"
        "|Bríd|Deirdre",
        "Murphy|Kelly|O'Sullivan|Walsh|O'Brien|Byrne|Ryan|O'Connor|O'Neill|Ó Briain|McCarthy|Doyle"
        "|Gallagher|Ó Súilleabháin|Kavanagh|Fitzgerald|Ó Sé|Mac Cárthaigh|Ó Floinn|Brennan"
        "|McLoughlin|Fitzpatrick|Donnelly|Ó Ceallaigh|MacNamara",
        "Construction|Logistics|Consulting|Properties|Engineering|Pharmacy|Solicitors|Accountants"
        "|Hospitality|Renewables",
        "Shamrock|Emerald|Liffey|Atlantic|Burren|Connacht|Wicklow|Claddagh|Skellig",
        "Ltd|Ltd|Ltd.|Limited|DAC|PLC|Teoranta",
        "IE#######A",
        titles="Dr|Dr.|Prof.",
        banks="AIBK9311|BOFI9000|IPBS9906|AIBK9300|BOFI9012|ULSB9850",
    ),
    _Country(
        "PL", 0.06,
        "Łukasz|Paweł|Michał|Wojciech|Krzysztof|Jędrzej|Grzegorz|Tomasz|Przemysław|Zbigniew"
        "|Mikołaj|Bartłomiej|Jarosław|Sławomir|Mirosław|Stanisław",
        "Małgorzata|Agnieszka|Katarzyna|Zofia|Bożena|Joanna|Grażyna|Jadwiga|Wiesława|Dorota|Elżbieta"
        "|Aleksandra|Barbara|Urszula|Beata|Żaneta",
        "Nowak|Kowalski/Kowalska|Wiśniewski/Wiśniewska|Wójcik|Kowalczyk|Kamiński/Kamińska"
        "|Lewandowski/Lewandowska|Zieliński/Zielińska|Szymański/Szymańska|Woźniak"
        "|Dąbrowski/Dąbrowska|Kozłowski/Kozłowska|Jankowski/Jankowska|Mazur"
        "|Kwiatkowski/Kwiatkowska|Krawczyk|Piotrowski/Piotrowska|Grabowski/Grabowska|Żak|Sikora"
        "|Błaszczyk|Gołębiowski/Gołębiowska|Przybylski/Przybylska|Chmielewski/Chmielewska"
        "|Wróblewski/Wróblewska|Jabłoński/Jabłońska|Pawłowski/Pawłowska",
        "Budownictwo|Transport|Usługi|Nieruchomości|Informatyka|Handel|Piekarnia|Księgowość"
        "|Spedycja|Instalacje",
        "Wisła|Mazowsze|Bałtyk|Tatry|Jantar|Orlik|Słoneczko|Podhale|Kaszuby",
        "Sp. z o.o.|Sp. z o.o.|sp. z o.o.|S.A.|Sp.k.|Spółka z ograniczoną odpowiedzialnością",
        "PL##########",
        titles="Dr|Dr.|Prof. Dr.|Inż.",
        banks="10901014|11402004|10201026|12401037|10500002|11602202",
        fill=6,
    ),
    _Country(
        "FI", 0.03,
        "Juha|Mikko|Jukka|Tuomas|Ville|Väinö|Eetu|Matti|Pekka|Antti|Jussi|Sami|Timo|Heikki|Lauri"
        "|Jyrki",
        "Aino|Eeva|Päivi|Sanna|Hanna|Tuula|Riikka|Minna|Satu|Leena|Sirpa|Kaisa|Tiina|Elina|Ritva"
        "|Helmi",
        "Korhonen|Virtanen|Mäkinen|Nieminen|Mäkelä|Hämäläinen|Laine|Heikkinen|Koskinen|Järvinen"
        "|Lehtonen|Lehtinen|Saarinen|Salminen|Heinonen|Niemi|Heikkilä|Kinnunen|Salonen|Turunen"
        "|Jääskeläinen|Rönkkö|Väisänen|Kärkkäinen|Pietiläinen|Räsänen",
        "Rakennus|Kuljetus|Konsultointi|Kiinteistöt|Ohjelmistot|Metalli|Leipomo|Sähkö|Tilitoimisto",
        "Revontuli|Pohjola|Saimaa|Lappi|Tunturi|Kuusamo|Koivisto|Kalevala|Aurora",
        "Oy|Oy|Oy|Oyj|Ky|Osakeyhtiö",
        "FI########",
        titles="Dr.|Prof.",
        banks="1000|5000|8000|4000|3131|2000",
    ),
    _Country(
        "SE", 0.03,
        "Björn|Anders|Lars|Sven|Göran|Oskar|Nils|Håkan|Magnus|Fredrik|Mattias|Jörgen|Olof|Torbjörn"
        "|Pär|Linus",
        "Åsa|Märta|Linnéa|Karin|Ingrid|Elsa|Maja|Sofie|Britt|Gunilla|Birgitta|Lovisa|Ebba|Ylva|Signe"
        "|Ingegerd",
        "Andersson|Johansson|Karlsson|Nilsson|Eriksson|Larsson|Olsson|Persson|Svensson|Gustafsson"
        "|Pettersson|Jonsson|Lindqvist|Lindström|Öberg|Åberg|Sjöberg|Ekström|Bergström|Håkansson"
        "|Lundgren|Söderberg|Wallén|Strömberg|Åkesson|Blomqvist|Sandström",
        "Bygg|Transport|Konsult|Fastigheter|Data|Mekaniska|Bageri|Redovisning|Elektriska",
        "Norrsken|Fjällvind|Skärgård|Vasastan|Ljusgården|Älvdalen|Granskogen|Sjöstjärna",
        "AB|AB|AB|HB|KB|Aktiebolag",
        "SE##########01",
        titles="Dr.|Prof.|Dr",
        banks="500|800|600|300|120|950",
        fill=7,
    ),
    _Country(
        "DK", 0.03,
        "Søren|Jørgen|Rasmus|Frederik|Mads|Bjørn|Asger|Mikkel|Anders|Kasper|Niels|Jesper|Troels"
        "|Henrik|Poul|Esben",
        "Mette|Ida|Freja|Kirsten|Signe|Lærke|Birthe|Dorthe|Hanne|Sørine|Malene|Pernille|Tove|Ditte"
        "|Astrid|Gry",
        "Jensen|Nielsen|Hansen|Pedersen|Andersen|Christensen|Larsen|Sørensen|Rasmussen|Jørgensen"
        "|Petersen|Madsen|Kristensen|Olsen|Thomsen|Christiansen|Poulsen|Johansen|Møller|Mortensen"
        "|Østergaard|Kjær|Bøgh|Dahl|Søndergaard|Fogh|Kjærsgaard|Frederiksen",
        "Byg|Transport|Rådgivning|Ejendomme|Tømrer|Bageri|Revision|Elektro|Maskinfabrik",
        "Nordstjerne|Havblik|Kløverhus|Fjordlys|Solsikke|Vestkyst|Bølgen|Lyngbakken",
        "ApS|ApS|ApS|A/S|A/S|I/S|Anpartsselskab",
        "DK########",
        titles="Dr.|Dr|Prof.",
        banks="0040|5301|3000|9570|1551|2000",
    ),
    _Country(
        "CZ", 0.02,
        "Tomáš|Jiří|Petr|Lukáš|Ondřej|Radek|Vojtěch|Jaroslav|Miroslav|Zdeněk|Václav|Bohumil|Jindřich"
        "|Přemysl|Matěj",
        "Kateřina|Tereza|Lucie|Zuzana|Veronika|Jiřina|Markéta|Zdeňka|Božena|Vlasta|Ludmila|Dagmar"
        "|Blanka|Radka|Alžběta",
        "Novák/Nováková|Svoboda/Svobodová|Novotný/Novotná|Dvořák/Dvořáková|Černý/Černá"
        "|Procházka/Procházková|Kučera/Kučerová|Veselý/Veselá|Horák/Horáková|Němec/Němcová"
        "|Pokorný/Pokorná|Marek/Marková|Pospíšil/Pospíšilová|Hájek/Hájková|Král/Králová"
        "|Růžička/Růžičková|Beneš/Benešová|Fiala/Fialová|Sedláček/Sedláčková|Šimek/Šimková"
        "|Zelenka/Zelenková|Doležal/Doležalová|Kratochvíl/Kratochvílová",
        "Stavby|Doprava|Služby|Reality|Strojírna|Pekárna|Účetnictví|Elektro|Instalace",
        "Vltava|Šumava|Krkonoše|Labe|Morava|Podzámčí|Slunečnice|Českomoravská",
        "s.r.o.|s.r.o.|s.r.o.|spol. s r.o.|a.s.|v.o.s.|společnost s ručením omezeným",
        "CZ########",
        titles="Ing.|Ing.|Mgr.|Dr.",
        banks="0800|0100|0300|2010|5500|0600",
        fill=6,
    ),
    _Country(
        "RO", 0.02,
        "Andrei|Mihai|Ștefan|Alexandru|Răzvan|Ionuț|Florin|Gheorghe|Cătălin|Bogdan|Sorin|Vlad|Costel"
        "|Dănuț|Tudor",
        "Ioana|Elena|Cristina|Bianca|Teodora|Mădălina|Andreea|Alina|Roxana|Simona|Irina|Ștefania"
        "|Luminița|Gabriela|Oana",
        "Popescu|Popa|Pop|Radu|Dumitru|Stan|Stoica|Matei|Ciobanu|Ionescu|Rusu|Munteanu|Constantin"
        "|Mihăilescu|Răducanu|Tănase|Dobre|Bălan|Șerban|Țurcanu|Dumitrescu|Niculescu|Georgescu"
        "|Vasilescu|Constantinescu|Păunescu",
        "Construcții|Transport|Consultanță|Imobiliare|Software|Comerț|Panificație|Contabilitate",
        "Carpați|Dunărea|Transilvania|Bucovina|Delta|Ceahlău|Mărțișor|Zorile",
        "S.R.L.|S.R.L.|SRL|S.A.|SA|Societate cu răspundere limitată",
        "RO########",
        titles="Dr.|Ing.|Prof. Dr.",
        banks="BTRL|RNCB|BRDE|INGB|BACX|RZBR",
        fill=6,
    ),
    _Country(
        "HU", 0.01,
        "László|István|Zoltán|Gábor|Péter|Bence|Ákos|Gergő|Levente|Tibor|Attila|Balázs|Csaba|Ödön"
        "|Miklós",
        "Ágnes|Erzsébet|Katalin|Zsófia|Dóra|Réka|Ildikó|Krisztina|Eszter|Judit|Boglárka|Tünde|Gyöngyi"
        "|Orsolya|Anikó",
        "Nagy|Kovács|Tóth|Szabó|Horváth|Varga|Kiss|Molnár|Németh|Farkas|Balogh|Papp|Takács|Juhász"
        "|Lakatos|Mészáros|Oláh|Rácz|Fekete|Szűcs|Győri|Kőműves|Szentgyörgyi|Vörösmarty|Bánffy",
        "Építőipari|Szállítmányozási|Tanácsadó|Ingatlan|Informatikai|Kereskedelmi|Pékség|Könyvelő",
        "Duna|Balaton|Tisza|Mátra|Pannónia|Hajnal|Napfény|Gellért",
        "Kft.|Kft.|Kft|Zrt.|Bt.|Nyrt.|Korlátolt Felelősségű Társaság",
        "HU########",
        titles="Dr.|Dr.|Prof. Dr.",
        banks="11773016|10400236|11600006|12010855|10918001|11711041",
        fill=6,
    ),
)
# fmt: on
_CODES: Final = tuple(c.code for c in _COUNTRIES)
_K: Final = len(_COUNTRIES)
_WEIGHTS: Final = np.array([c.weight for c in _COUNTRIES]) / sum(c.weight for c in _COUNTRIES)
_LEI_PREFIXES: Final = ("5299", "9695", "7245", "8156", "2138", "6354", "5493", "3157", "2594", "9598")


def _split(s: str) -> list[str]:
    return [w.strip() for w in s.split("|") if w.strip()]


class _Pool:
    """Per-country string lists flattened into one Arrow array: local index → global index."""

    def __init__(self, per_country: Sequence[Sequence[str]]) -> None:
        self.lengths: npt.NDArray[np.int64] = np.array([len(x) for x in per_country], dtype=np.int64)
        if (self.lengths == 0).any():
            raise ValueError("every country needs a non-empty list")
        self.offsets: npt.NDArray[np.int64] = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(
            np.int64
        )
        self.values: list[str] = [v for x in per_country for v in x]
        self.array = pa.array(self.values, type=pa.string())

    def local(self, country: npt.NDArray[np.int64], u: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        return np.minimum((u * self.lengths[country]).astype(np.int64), self.lengths[country] - 1)

    def other(
        self, country: npt.NDArray[np.int64], local: npt.NDArray[np.int64], u: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.int64]:
        """A local index guaranteed different from ``local`` (where the list has ≥ 2 entries)."""
        n = self.lengths[country]
        step = 1 + np.minimum((u * np.maximum(n - 1, 1)).astype(np.int64), np.maximum(n - 2, 0))
        out: npt.NDArray[np.int64] = np.remainder(local + step, n)
        return out

    def take(
        self,
        country: npt.NDArray[np.int64],
        local: npt.NDArray[np.int64],
        mask: npt.NDArray[np.bool_] | None = None,
    ) -> pa.Array:
        idx = self.offsets[country] + local
        return self.array.take(pa.array(idx, mask=None if mask is None else ~mask))


def _surname_forms(c: _Country) -> tuple[list[str], list[str]]:
    male, female = [], []
    for entry in _split(c.surnames):
        m, _, f = entry.partition("/")
        male.append(m)
        female.append(f or m)
    return male, female


_MALE: Final = _Pool([_split(c.male) for c in _COUNTRIES])
_FEMALE: Final = _Pool([_split(c.female) for c in _COUNTRIES])
_SURNAME_M: Final = _Pool([_surname_forms(c)[0] for c in _COUNTRIES])
_SURNAME_F: Final = _Pool([_surname_forms(c)[1] for c in _COUNTRIES])
_SECTORS: Final = _Pool([_split(c.sectors) for c in _COUNTRIES])
_BRANDS: Final = _Pool([_split(c.brands) for c in _COUNTRIES])
_FORMS: Final = _Pool([_split(c.legal_forms) for c in _COUNTRIES])
_TITLES: Final = _Pool([_split(c.titles) for c in _COUNTRIES])

_WORD = re.compile(r"[^\W\d_]+")
# Alphabetic runs of every legal form and title: never typo targets, never counted as shared words.
_FORM_RUNS: Final = frozenset(
    w.casefold() for c in _COUNTRIES for f in _split(c.legal_forms) for w in _WORD.findall(f)
)
_TITLE_RUNS: Final = frozenset(
    w.casefold() for c in _COUNTRIES for t in _split(c.titles) for w in _WORD.findall(t)
) | {"dr", "prof", "ing", "mr", "mrs", "ms", "herr", "frau", "mme", "sr", "sra", "dhr"}


# --------------------------------------------------------------------------------------------------
# Character-matrix helpers: fixed-width ASCII strings as (rows, width) uint8 matrices.
# --------------------------------------------------------------------------------------------------

_ALNUM: Final = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_LETTERS: Final = _ALNUM[10:]
_U8 = npt.NDArray[np.uint8]
_I64 = npt.NDArray[np.int64]


def _strings_from_matrix(mat: _U8) -> pa.Array:
    rows, width = mat.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(mat).tobytes()
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def _const_matrix(rows: int, text: str) -> _U8:
    return np.broadcast_to(np.frombuffer(text.encode("ascii"), dtype=np.uint8), (rows, len(text))).copy()


def _digits_matrix(values: _I64, width: int) -> _U8:
    """Zero-padded decimal digits of non-negative ``values`` (must be < 10**width)."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def _mod97(mat: _U8, remainder: _I64 | None = None) -> _I64:
    """ISO 7064 MOD 97-10 of the alphanumeric rows (letters count as two digits A=10 … Z=35)."""
    r = np.zeros(mat.shape[0], dtype=np.int64) if remainder is None else remainder.copy()
    for col in mat.T:
        v = col.astype(np.int64)
        letter = v >= 65
        v = np.where(letter, v - 55, v - 48)
        r = (r * np.where(letter, 100, 10) + v) % 97
    return r


def _permute(rows: _I64, modulus: int, mult: int, add: int) -> _I64:
    """A bijection of [0, modulus) evaluated at ``rows`` (mult coprime to modulus, rows < 2**32)."""
    return (rows * mult + add) % modulus


_UNIQUE_MOD: Final = 10**10  # ten row digits in every BBAN
_IBAN_MULT: Final = 1_234_567_891  # coprime to 10; rows * mult < 2**63 for rows < 2**32
_IBAN_ADD: Final = 4_872_019_357
_LEI_MOD: Final = 36**7
_LEI_MULT: Final = 2_147_483_629  # coprime to 36
_LEI_ADD: Final = 19_191_919_191


@dataclass(frozen=True)
class _BbanLayout:
    banks: _U8  # (n_banks, width) bank prefixes
    fill: int
    alpha: int
    tail: str
    length: int  # BBAN length


def _layout(c: _Country) -> _BbanLayout:
    banks = _split(c.banks) or [""]
    width = len(banks[0])
    if any(len(b) != width for b in banks):
        raise ValueError(f"{c.code}: bank prefixes must share one width")
    mat = np.frombuffer("".join(banks).encode("ascii"), dtype=np.uint8).reshape(len(banks), width)
    tail = {"": 0, "be": 2, "fr": 2, "rand2": 2}[c.tail]
    length = c.alpha + width + c.fill + 10 + tail
    if length + 4 != IBAN_LENGTHS[c.code]:
        raise ValueError(f"{c.code}: BBAN layout gives {length + 4} characters, want {IBAN_LENGTHS[c.code]}")
    return _BbanLayout(mat, c.fill, c.alpha, c.tail, length)


_LAYOUTS: Final = tuple(_layout(c) for c in _COUNTRIES)
_MAX_FILL: Final = max(lay.fill + lay.alpha + (2 if lay.tail == "rand2" else 0) for lay in _LAYOUTS)


def _bban_matrix(k: int, unique: _I64, bank_u: npt.NDArray[np.float64], rand: _I64) -> _U8:
    """BBANs of country ``k``: ``rand`` is (rows, ≥ _MAX_FILL) of random ints in [0, 36)."""
    lay = _LAYOUTS[k]
    rows = unique.shape[0]
    parts: list[_U8] = []
    col = 0
    if lay.alpha:
        parts.append(_LETTERS[rand[:, col : col + lay.alpha] % 26])
        col += lay.alpha
    bank_idx = np.minimum((bank_u * lay.banks.shape[0]).astype(np.int64), lay.banks.shape[0] - 1)
    if lay.banks.shape[1]:
        parts.append(lay.banks[bank_idx])
    fill = rand[:, col : col + lay.fill] % 10
    col += lay.fill
    parts.append((fill + 48).astype(np.uint8))
    parts.append(_digits_matrix(unique, 10))
    if lay.tail == "be":
        check = unique % 97
        parts.append(_digits_matrix(np.where(check == 0, 97, check), 2))
    elif lay.tail == "fr":
        prefixes = [bytes(row).decode() for row in lay.banks]
        bank = np.array([int(p[:5]) for p in prefixes], dtype=np.int64)[bank_idx]
        branch = np.array([int(p[5:]) for p in prefixes], dtype=np.int64)[bank_idx]
        account = fill[:, 0].astype(np.int64) * _UNIQUE_MOD + unique
        key = 97 - (89 * bank + 15 * branch + 3 * account) % 97
        parts.append(_digits_matrix(key, 2))
    elif lay.tail == "rand2":
        parts.append((rand[:, col : col + 2] % 10 + 48).astype(np.uint8))
    out = np.concatenate(parts, axis=1) if parts else np.empty((rows, 0), dtype=np.uint8)
    if out.shape[1] != lay.length:
        raise AssertionError(f"{_CODES[k]}: BBAN width {out.shape[1]} != {lay.length}")
    return out


def _iban_matrix(k: int, bban: _U8) -> _U8:
    code = _CODES[k]
    tail = _const_matrix(bban.shape[0], f"{code}00")
    check = 98 - _mod97(tail, _mod97(bban))
    return np.concatenate([_const_matrix(bban.shape[0], code), _digits_matrix(check, 2), bban], axis=1)


def _by_country(country: _I64, build: Callable[[int, _I64], pa.Array]) -> pa.Array:
    """Build a string array group-wise per country (``build(k, row_positions)``), in row order."""
    pieces: list[pa.Array] = []
    positions: list[_I64] = []
    for k in np.unique(country).tolist():
        pos = np.flatnonzero(country == k).astype(np.int64)
        pieces.append(build(int(k), pos))
        positions.append(pos)
    if not pieces:
        return pa.array([], type=pa.string())
    order = np.concatenate(positions)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.shape[0], dtype=np.int64)
    return pa.concat_arrays(pieces).take(pa.array(inverse))


def _lei_matrix(rows: _I64, prefix_u: npt.NDArray[np.float64], rand: _I64) -> _U8:
    prefixes = np.frombuffer("".join(_LEI_PREFIXES).encode(), dtype=np.uint8).reshape(-1, 4)
    p = prefixes[np.minimum((prefix_u * len(_LEI_PREFIXES)).astype(np.int64), len(_LEI_PREFIXES) - 1)]
    unique = _permute(rows, _LEI_MOD, _LEI_MULT, _LEI_ADD)
    base36 = _ALNUM[(unique[:, None] // (36 ** np.arange(6, -1, -1, dtype=np.int64))) % 36]
    body = np.concatenate([p, _const_matrix(rows.shape[0], "00"), _ALNUM[rand[:, :5]], base36], axis=1)
    check = 98 - _mod97(_const_matrix(rows.shape[0], "00"), _mod97(body))
    return np.concatenate([body, _digits_matrix(check, 2)], axis=1)


def _bic_matrix(country: _I64, rand: _I64) -> _U8:
    rows = country.shape[0]
    bank = _LETTERS[rand[:, 0:4] % 26]
    bank[:, 0] = np.where(bank[:, 0] == ord("V"), ord("W"), bank[:, 0])  # never the demo BIC's bank code
    cc = np.frombuffer("".join(_CODES).encode(), dtype=np.uint8).reshape(-1, 2)[country]
    loc = _ALNUM[rand[:, 4:6]]
    loc[:, 1] = np.where(loc[:, 1] == ord("0"), ord("X"), loc[:, 1])  # "0" marks test BICs
    branch = np.where((rand[:, 6] % 4 == 0)[:, None], _ALNUM[rand[:, 7:10]], _const_matrix(rows, "XXX"))
    return np.concatenate([bank, cc, loc, branch], axis=1)


def _vat_strings(k: int, rand: _I64) -> pa.Array:
    """Country ``k``'s VAT-shaped tax ids from random digits ``rand`` (rows, ≥ 12)."""
    c = _COUNTRIES[k]
    rows = rand.shape[0]
    if c.code == "FR":  # FR + 2-digit key + SIREN, key = (12 + 3 * (SIREN mod 97)) mod 97
        siren = (rand[:, :9] % 10) @ (10 ** np.arange(8, -1, -1, dtype=np.int64))
        key = (12 + 3 * (siren % 97)) % 97
        mat = np.concatenate(
            [_const_matrix(rows, "FR"), _digits_matrix(key, 2), _digits_matrix(siren, 9)], axis=1
        )
        return _strings_from_matrix(mat)
    template = np.frombuffer(c.vat.encode(), dtype=np.uint8)
    mat = np.broadcast_to(template, (rows, template.shape[0])).copy()
    hashes = np.flatnonzero(template == ord("#"))
    mat[:, hashes] = (rand[:, : hashes.shape[0]] % 10 + 48).astype(np.uint8)
    letters = np.flatnonzero(template == ord("A"))
    if letters.shape[0] and c.code == "IE":
        mat[:, letters] = _LETTERS[rand[:, 11:12] % 23]
    return _strings_from_matrix(mat)


def _join(*parts: pa.Array, sep: str = " ") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep, null_handling="skip")


def _interleave_lists(slots: Sequence[pa.Array]) -> pa.Array:
    """list<string> whose row i holds the non-null ``slots[j][i]`` in slot order."""
    rows = len(slots[0])
    flat = pa.concat_arrays([s.cast(pa.string()) for s in slots])
    order = (
        np.arange(len(slots), dtype=np.int64)[None, :] * rows + np.arange(rows, dtype=np.int64)[:, None]
    ).ravel()
    values = flat.take(pa.array(order))
    valid = np.asarray(values.is_valid())
    counts = valid.reshape(rows, len(slots)).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values.filter(pa.array(valid)))


# --------------------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------------------

_U_COLS: Final = 40
_R_COLS: Final = 40


def _chunk(seed: int, chunk: int, rows: int) -> pa.Table:
    """Rows ``[chunk * CHUNK_ROWS, chunk * CHUNK_ROWS + rows)``; every draw is CHUNK_ROWS long."""
    rng = np.random.default_rng([seed, chunk])
    u_all = rng.random((CHUNK_ROWS, _U_COLS))
    r_all = rng.integers(0, 36, size=(CHUNK_ROWS, _R_COLS), dtype=np.int64)
    home_all = rng.choice(_K, size=CHUNK_ROWS, p=_WEIGHTS)
    away_all = rng.choice(_K, size=CHUNK_ROWS, p=_WEIGHTS)
    u, r = u_all[:rows], r_all[:rows]
    country = home_all[:rows].astype(np.int64)
    row_no = np.arange(chunk * CHUNK_ROWS, chunk * CHUNK_ROWS + rows, dtype=np.int64)

    is_org = u[:, 0] < P_ORGANISATION
    status = np.where(u[:, 1] < P_CLOSED, 1, np.where(u[:, 1] < P_CLOSED + P_BLOCKED, 2, 0))
    iban_country = np.where(u[:, 2] < P_HOME_IBAN, country, away_all[:rows].astype(np.int64))

    # --- persons: holder 1 and (joint accounts) holder 2 -------------------------------------------
    person = ~is_org
    joint = person & (u[:, 3] < P_JOINT_PERSON)

    def holder(
        female: npt.NDArray[np.bool_],
        f_local: _I64,
        s_local: _I64,
        cols: tuple[int, int, int, int, int, int],
        mask: npt.NDArray[np.bool_],
    ) -> pa.Array:
        """Title? First Middle? Surname Surname2? — ``cols`` are the uniform columns for
        (middle?, middle, title?, title, second surname?, second surname)."""
        mid_flag, mid_u, title_flag, title_u, sur2_flag, sur2_u = cols
        fem = pa.array(female)
        first = pc.if_else(
            fem,
            _FEMALE.take(country, np.where(female, f_local, 0)),
            _MALE.take(country, np.where(female, 0, f_local)),
        )
        has_mid = u[:, mid_flag] < P_MIDDLE
        middle = pc.if_else(
            fem,
            _FEMALE.take(
                country, _FEMALE.other(country, np.where(female, f_local, 0), u[:, mid_u]), mask=has_mid
            ),
            _MALE.take(
                country, _MALE.other(country, np.where(female, 0, f_local), u[:, mid_u]), mask=has_mid
            ),
        )
        surname = pc.if_else(fem, _SURNAME_F.take(country, s_local), _SURNAME_M.take(country, s_local))
        has_sur2 = iberian & (u[:, sur2_flag] < P_SECOND_SURNAME)
        sur2 = _SURNAME_M.take(country, _SURNAME_M.other(country, s_local, u[:, sur2_u]), mask=has_sur2)
        title = _TITLES.take(country, _TITLES.local(country, u[:, title_u]), mask=u[:, title_flag] < P_TITLE)
        name = _join(title, first, middle, surname, sur2)
        return pc.if_else(pa.array(mask), name, pa.nulls(rows, pa.string()))

    def first_local(female: npt.NDArray[np.bool_], col: int) -> _I64:
        return np.where(female, _FEMALE.local(country, u[:, col]), _MALE.local(country, u[:, col]))

    iberian = np.isin(country, [_CODES.index("ES"), _CODES.index("PT")])
    f1_female = u[:, 4] < 0.5
    f1_local = first_local(f1_female, 5)
    s1_local = _SURNAME_M.local(country, u[:, 10])
    h1 = holder(f1_female, f1_local, s1_local, (6, 7, 8, 9, 11, 12), person)
    # holder 2: often the same surname (in its gendered form), never holder 1's first name
    f2_female = np.where(u[:, 15] < P_JOINT_MIXED, ~f1_female, f1_female)
    f2_local = first_local(f2_female, 16)
    clash = (f2_female == f1_female) & (f2_local == f1_local)
    f2_local = np.where(
        clash,
        np.where(
            f2_female, _FEMALE.other(country, f2_local, u[:, 16]), _MALE.other(country, f2_local, u[:, 16])
        ),
        f2_local,
    )
    same_surname = u[:, 13] < P_JOINT_SAME_SURNAME
    s2_local = np.where(same_surname, s1_local, _SURNAME_M.other(country, s1_local, u[:, 14]))
    h2 = holder(f2_female, f2_local, s2_local, (17, 18, 19, 20, 21, 22), joint)

    # --- organisations -----------------------------------------------------------------------------
    pattern = (u[:, 23] * 5).astype(np.int64)
    sur_a = _SURNAME_M.take(country, _SURNAME_M.local(country, u[:, 24]))
    sur_b = _SURNAME_M.take(country, _SURNAME_M.other(country, _SURNAME_M.local(country, u[:, 24]), u[:, 25]))
    sector_local = _SECTORS.local(country, u[:, 26])
    brand_local = _BRANDS.local(country, u[:, 27])
    sector = _SECTORS.take(country, sector_local)
    brand = _BRANDS.take(country, brand_local)
    form = _FORMS.take(country, _FORMS.local(country, u[:, 28]))
    amp = pa.array(["&"] * rows, type=pa.string())
    candidates = [
        _join(sur_a, sector, form),  # Müller Logistik GmbH
        _join(brand, sector, form),  # Nordlicht Software GmbH
        _join(sur_a, amp, sur_b, form),  # Müller & Schmidt GmbH
        _join(sector, sur_a, form),  # Boulangerie Martin SARL
        _join(brand, form),  # Alpenblick AG
    ]
    org_name = candidates[0]
    for p in range(1, 5):
        org_name = pc.if_else(pa.array(pattern == p), candidates[p], org_name)
    trade_n = np.where(
        is_org, np.where(u[:, 29] < P_TRADE_1, 1, np.where(u[:, 29] < P_TRADE_1 + P_TRADE_2, 2, 0)), 0
    )
    brand2_local = _BRANDS.other(country, brand_local, u[:, 30])
    brand3_local = _BRANDS.other(country, brand2_local, u[:, 31])
    n_brands = _BRANDS.lengths[country]  # ≥ 3 everywhere: step past brand 1, then past brand 2
    for avoid in (brand_local, brand2_local):
        brand3_local = np.where(brand3_local == avoid, (brand3_local + 1) % n_brands, brand3_local)
    sector2 = _SECTORS.take(country, _SECTORS.other(country, sector_local, u[:, 32]))
    trade1 = _join(
        _BRANDS.take(country, brand2_local),
        pc.if_else(pa.array(u[:, 33] < 0.6), sector2, pa.nulls(rows, pa.string())),
    )
    trade2 = _BRANDS.take(country, brand3_local)

    null = pa.nulls(rows, pa.string())
    slot0 = pc.if_else(pa.array(is_org), org_name, h1)
    slot1 = pc.if_else(pa.array(is_org), pc.if_else(pa.array(trade_n >= 1), trade1, null), h2)
    slot2 = pc.if_else(pa.array(is_org & (trade_n >= 2)), trade2, null)
    names = _interleave_lists([slot0, slot1, slot2])

    # --- identifiers ------------------------------------------------------------------------------
    unique = _permute(row_no, _UNIQUE_MOD, _IBAN_MULT, _IBAN_ADD)
    iban = _by_country(
        iban_country,
        lambda k, pos: _strings_from_matrix(
            _iban_matrix(k, _bban_matrix(k, unique[pos], u[pos, 34], r[pos]))
        ),
    )
    lei_all = _strings_from_matrix(_lei_matrix(row_no, u[:, 35], r[:, 10:15]))
    lei = pc.if_else(pa.array(is_org & (u[:, 36] < P_LEI)), lei_all, null)
    bic_all = _strings_from_matrix(_bic_matrix(country, r[:, 15:25]))
    any_bic = pc.if_else(pa.array(is_org & (u[:, 37] < P_BIC)), bic_all, null)

    vat = _by_country(country, lambda k, pos: _vat_strings(k, r[pos, 25:38]))
    txid = pc.if_else(pa.array(is_org), pc.binary_join_element_wise("TXID", vat, ":"), null)
    fr = country == _CODES.index("FR")
    sren = pc.if_else(
        pa.array(is_org & fr), pc.binary_join_element_wise("SREN", pc.utf8_slice_codeunits(vat, 4), ":"), null
    )
    duns_digits = _strings_from_matrix(_digits_matrix((u[:, 38] * 1e9).astype(np.int64), 9))
    duns = pc.if_else(
        pa.array(is_org & (u[:, 39] < P_DUNS)), pc.binary_join_element_wise("DUNS", duns_digits, ":"), null
    )
    org_ids = _interleave_lists([txid, sren, duns])

    type_arr = pa.DictionaryArray.from_arrays(
        pa.array(is_org.astype(np.int8)), pa.array(["person", "organisation"])
    )
    status_arr = pa.DictionaryArray.from_arrays(
        pa.array(status.astype(np.int8)), pa.array(["active", "closed", "blocked"])
    )
    return pa.Table.from_arrays(
        [iban, names, type_arr.cast(pa.string()), status_arr.cast(pa.string()), lei, any_bic, org_ids],
        schema=SNAPSHOT_SCHEMA,
    )


def iter_account_chunks(n: int, seed: int = DEMO_SEED) -> Iterator[pa.Table]:
    """The rows of ``generate_accounts(n, seed)`` as consecutive tables of ≤ CHUNK_ROWS rows."""
    if n < 0 or n > MAX_ROWS:
        raise ValueError(f"n must be in [0, {MAX_ROWS}], got {n}")
    for chunk, start in enumerate(range(0, n, CHUNK_ROWS)):
        yield _chunk(seed, chunk, min(CHUNK_ROWS, n - start))


def generate_accounts(
    n: int, seed: int = DEMO_SEED, progress: Callable[[int], None] | None = None
) -> pa.Table:
    """A deterministic demo snapshot of ``n`` accounts in the DESIGN.md §3 contract (plus ``any_bic``
    and ``org_ids``). ``progress`` is called with the number of rows done after each chunk."""
    tables: list[pa.Table] = []
    done = 0
    for t in iter_account_chunks(n, seed):
        tables.append(t)
        done += t.num_rows
        if progress is not None:
            progress(done)
    if not tables:
        return SNAPSHOT_SCHEMA.empty_table()
    return pa.concat_tables(tables).combine_chunks()


def write_generated_snapshot(
    path: str | Path, n: int, seed: int = DEMO_SEED, progress: Callable[[int], None] | None = None
) -> None:
    """``write_snapshot(generate_accounts(n, seed), path)`` without holding the table: chunks are
    streamed into the file (same rows, same row groups), so 10M accounts fit in little memory."""

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, SNAPSHOT_SCHEMA, compression="zstd") as writer:
            pending: list[pa.Table] = []
            done = 0
            for chunk in iter_account_chunks(n, seed):
                pending.append(chunk)
                done += chunk.num_rows
                if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS or done == n:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    pending = []
                if progress is not None:
                    progress(done)

    write_atomically(path, write)


# --------------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------------


class Probe(msgspec.Struct, frozen=True):
    """A query with a known answer: ``expected`` is MTCH/CMTC/NMTC/NOAP, ``expected_matched_name``
    is set (the registered name the query derives from) exactly when ``expected == "CMTC"``."""

    iban: str
    name: str
    category: str
    expected: str
    expected_matched_name: str | None


_SPECIAL_FOLD: Final = str.maketrans(
    {"ß": "ss", "ł": "l", "ø": "o", "æ": "ae", "đ": "d", "œ": "oe", "ı": "i", "þ": "th"}
)
_GERMAN_FOLD: Final = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})


def _folds(token: str) -> set[str]:
    """Plain and German (ü → ue) ASCII folds of a token, case-folded."""
    low = token.casefold()
    out = set()
    for variant in (low, low.translate(_GERMAN_FOLD)):
        decomposed = unicodedata.normalize("NFKD", variant.translate(_SPECIAL_FOLD))
        out.add("".join(ch for ch in decomposed if not unicodedata.combining(ch)))
    return out


def _fold_name(name: str) -> str:
    return " ".join(sorted(min(_folds(w)) for w in _WORD.findall(name)))


def _content_words(name: str, *, organisation: bool) -> list[str]:
    """The name's words less titles (and, for organisations, legal-form words)."""
    skip = _FORM_RUNS | _TITLE_RUNS if organisation else _TITLE_RUNS
    return [w for w in _WORD.findall(name) if w.casefold() not in skip]


def _far(a: str, b: str, min_distance: int = 3) -> bool:
    return all(Levenshtein.distance(x, y) >= min_distance for x in _folds(a) for y in _folds(b))


def _all_far(words: Sequence[str], names: Sequence[str], *, organisation: bool) -> bool:
    account_words = [w for n in names for w in _content_words(n, organisation=organisation)]
    return all(_far(w, a) for w in words for a in account_words)


def _closest_is(probe: str, source: str, names: Sequence[str]) -> bool:
    """The probe is ≥ 2 folded edits nearer its source than every other registered name, and not
    equal to any of them after folding."""
    fp = _fold_name(probe)
    d_src = Levenshtein.distance(fp, _fold_name(source))
    if d_src == 0:
        return False
    return all(Levenshtein.distance(fp, _fold_name(n)) >= d_src + 2 for n in names if n != source)


_VOCABULARY: Final = frozenset(
    w.casefold()
    for pool in (_MALE, _FEMALE, _SURNAME_M, _SURNAME_F, _SECTORS, _BRANDS)
    for v in pool.values
    for w in _WORD.findall(v)
)


_VOWELS: Final = "aeiou"
_CONSONANTS: Final = "bdfglmnprt"  # no h/j/w/y (half vowels) nor c/k/q/s/z/v (spelling variants)


def _typo(name: str, rng: np.random.Generator) -> str | None:
    """One ASCII letter substituted strictly inside a content word of ≥ 8 letters, such that the
    word does not become another known name or word (a typo, never a different person).

    A vowel becomes a consonant and a consonant a vowel, so the result is never a spelling variant
    that is a name in its own right (Elisabeth → Elizabeth, Kristina → Krystina)."""
    spots = [
        (m.start() + i)
        for m in _WORD.finditer(name)
        if len(m.group()) >= 8 and m.group().casefold() not in _FORM_RUNS | _TITLE_RUNS
        for i in range(1, len(m.group()) - 1)
        if m.group()[i].isascii() and m.group()[i].lower() in _VOWELS + _CONSONANTS
    ]
    if not spots:
        return None
    at = spots[int(rng.integers(len(spots)))]
    old = name[at]
    choices = _CONSONANTS if old.lower() in _VOWELS else _VOWELS
    new = choices[int(rng.integers(len(choices)))]
    out = name[:at] + (new.upper() if old.isupper() else new) + name[at + 1 :]
    word = next(m.group() for m in _WORD.finditer(out) if m.start() <= at < m.end())
    return None if word.casefold() in _VOCABULARY else out


# "M." is also Monsieur: "M. Dupont" must not read as a salutation plus a bare surname.
_SALUTATION_INITIALS: Final = frozenset("M")


def _initial(name: str) -> str | None:
    tokens = name.split(" ")
    if len(tokens) < 2 or _WORD.fullmatch(tokens[0]) is None or tokens[0].casefold() in _TITLE_RUNS:
        return None
    if tokens[0][0].upper() in _SALUTATION_INITIALS:
        return None
    return f"{tokens[0][0]}. {' '.join(tokens[1:])}"


def _country_of(iban: str) -> int:
    return _CODES.index(iban[:2]) if iban[:2] in _CODES else 0


def _pick(pool: _Pool, k: int, rng: np.random.Generator) -> str:
    return pool.values[int(pool.offsets[k] + rng.integers(pool.lengths[k]))]


def _stranger_person(k: int, names: Sequence[str], rng: np.random.Generator) -> str:
    for attempt in range(200):
        kk = k if attempt < 100 else int(rng.integers(_K))
        female = bool(rng.random() < 0.5)
        pool, surnames = (_FEMALE, _SURNAME_F) if female else (_MALE, _SURNAME_M)
        first, last = _pick(pool, kk, rng), _pick(surnames, kk, rng)
        words = _WORD.findall(f"{first} {last}")
        if _all_far(words, names, organisation=False):
            return f"{first} {last}"
    raise RuntimeError(f"no unrelated person name found for {names!r}")


def _stranger_org(k: int, names: Sequence[str], rng: np.random.Generator) -> str:
    for attempt in range(200):
        kk = k if attempt < 100 else int(rng.integers(_K))
        lead = _pick(_BRANDS, kk, rng) if rng.random() < 0.5 else _pick(_SURNAME_M, kk, rng)
        words = [lead, _pick(_SECTORS, kk, rng)]
        if _all_far([w for x in words for w in _WORD.findall(x)], names, organisation=True):
            return f"{words[0]} {words[1]} {_pick(_FORMS, kk, rng)}"
    raise RuntimeError(f"no unrelated company name found for {names!r}")


def _random_ibans(country: _I64, unique: _I64, bank_u: npt.NDArray[np.float64], rand: _I64) -> pa.Array:
    def build(k: int, pos: _I64) -> pa.Array:
        return _strings_from_matrix(_iban_matrix(k, _bban_matrix(k, unique[pos], bank_u[pos], rand[pos])))

    return _by_country(country, build)


def _unknown_ibans(table: pa.Table, count: int, rng: np.random.Generator) -> list[str]:
    out: list[str] = []
    taken = table.column("iban")
    while len(out) < count:
        m = max(16, 2 * (count - len(out)))
        country = rng.choice(_K, size=m, p=_WEIGHTS).astype(np.int64)
        unique = rng.integers(0, _UNIQUE_MOD, size=m, dtype=np.int64)
        bank_u = rng.random(m)
        rand = rng.integers(0, 36, size=(m, _MAX_FILL), dtype=np.int64)
        cand = _random_ibans(country, unique, bank_u, rand)
        fresh = cand.filter(pc.invert(pc.is_in(cand, value_set=taken)))
        seen = set(out)
        for s in fresh.to_pylist():
            if s not in seen and len(out) < count:
                out.append(s)
                seen.add(s)
    return out


def _counts(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    unknown = set(mix) - set(PROBE_CATEGORIES)
    if unknown:
        raise ValueError(f"unknown probe categories: {sorted(unknown)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError("probe mix weights must be non-negative and not all zero")
    total = sum(mix.values())
    exact = {c: n * mix.get(c, 0.0) / total for c in PROBE_CATEGORIES}
    counts = {c: int(v) for c, v in exact.items()}
    for c in sorted(PROBE_CATEGORIES, key=lambda c: (-(exact[c] - counts[c]), PROBE_CATEGORIES.index(c))):
        if sum(counts.values()) >= n:
            break
        counts[c] += 1
    return counts


def generate_probes(
    table: pa.Table, n: int, mix: Mapping[str, float] | None = None, seed: int = DEMO_SEED
) -> list[Probe]:
    """``n`` probes with known answers drawn from ``table`` (categories in PROBE_CATEGORIES; the
    default mix is DEFAULT_PROBE_MIX), in a deterministic shuffled order."""
    counts = _counts(n, DEFAULT_PROBE_MIX if mix is None else mix)
    rng = np.random.default_rng([seed, 0x9E0BE])
    status = np.asarray(table.column("status").combine_chunks().to_numpy(zero_copy_only=False))
    active = np.flatnonzero(status == "active")
    inactive = np.flatnonzero(status != "active")
    need_active = counts["exact"] + counts["close"] + counts["no_match"]
    if need_active and active.shape[0] == 0:
        raise ValueError("the table has no active account to draw probes from")
    if counts["inactive"] and inactive.shape[0] == 0:
        raise ValueError("the table has no closed or blocked account for 'inactive' probes")

    def rows_at(idx: npt.NDArray[np.int64]) -> list[tuple[str, list[str], str]]:
        sub = table.select(["iban", "names", "type"]).take(pa.array(idx))
        return list(
            zip(
                sub.column("iban").to_pylist(),
                sub.column("names").to_pylist(),
                sub.column("type").to_pylist(),
                strict=True,
            )
        )

    probes: list[Probe] = []
    for iban, names, _kind in rows_at(rng.choice(active, size=counts["exact"])) if counts["exact"] else []:
        name = names[int(rng.integers(len(names)))]
        case = rng.random()
        shown = name.upper() if case < 0.2 else name.lower() if case < 0.3 else name
        probes.append(Probe(iban, shown, "exact", "MTCH", None))

    made = 0
    while made < counts["close"]:
        for iban, names, kind in rows_at(rng.choice(active, size=2 * (counts["close"] - made) + 8)):
            if made >= counts["close"]:
                break
            source = names[int(rng.integers(len(names)))]
            variant = None
            if kind == "person" and len(names) == 1 and rng.random() < 0.3:
                variant = _initial(source)
            if variant is None:
                variant = _typo(source, rng)
            if variant is None or not _closest_is(variant, source, names):
                continue
            probes.append(Probe(iban, variant, "close", "CMTC", source))
            made += 1

    for iban, names, kind in (
        rows_at(rng.choice(active, size=counts["no_match"])) if counts["no_match"] else []
    ):
        k = _country_of(iban)
        name = _stranger_person(k, names, rng) if kind == "person" else _stranger_org(k, names, rng)
        probes.append(Probe(iban, name, "no_match", "NMTC", None))

    for iban in _unknown_ibans(table, counts["unknown_iban"], rng) if counts["unknown_iban"] else []:
        probes.append(Probe(iban, _stranger_person(_country_of(iban), [], rng), "unknown_iban", "NOAP", None))

    for iban, names, _kind in (
        rows_at(rng.choice(inactive, size=counts["inactive"])) if counts["inactive"] else []
    ):
        probes.append(Probe(iban, names[0], "inactive", "NOAP", None))

    order = rng.permutation(len(probes))
    return [probes[i] for i in order]


def demo_example(table: pa.Table) -> tuple[str, str]:
    """(iban, name) of the first active single-holder person account with a plain (untitled) name."""
    for batch in table.select(["iban", "names", "type", "status"]).to_batches(max_chunksize=4096):
        for iban, names, kind, status in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            if kind == "person" and status == "active" and len(names) == 1 and _initial(names[0]):
                return iban, names[0]
    raise ValueError("the table has no active single-holder person account")
