"""``vop eval``: replay a labelled cases file through the same path the API uses, and score it."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pyarrow as pa

from app.index_holder import IndexHolder
from app.problems import ProblemError
from app.progress import Progress
from app.service import Verifier
from app.settings import DEMO_BIC
from app.wire import Agent, FinancialInstitutionId, Party, PartyAccount, VerificationRequest
from matching.index import AccountIndex

CODES = ("MTCH", "CMTC", "NMTC", "NOAP")


class Case(msgspec.Struct, frozen=True):
    case_id: str
    iban: str
    category: str
    account_type: str
    account_status: str
    account_names: str
    query_name: str
    expected: str
    expected_matched_name: str = ""


class CasesError(ValueError):
    """The cases file is malformed."""


def read_cases(path: Path) -> list[Case]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = {f.name for f in msgspec.structs.fields(Case) if f.required}
        missing = fields - set(reader.fieldnames or ())
        if missing:
            raise CasesError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        return [msgspec.convert(row, Case) for row in reader]


def cases_index(cases: list[Case]) -> AccountIndex:
    """One snapshot of every account the cases hold (status not ``absent``)."""
    accounts: dict[str, tuple[list[str], str, str]] = {}
    for c in cases:
        if c.account_status == "absent":
            continue
        acct = (c.account_names.split("|"), c.account_type, c.account_status)
        if accounts.setdefault(c.iban, acct) != acct:
            raise CasesError(f"case {c.case_id}: IBAN {c.iban} is described differently by another case")
    table = pa.table(
        {
            "iban": list(accounts),
            "names": [a[0] for a in accounts.values()],
            "type": [a[1] for a in accounts.values()],
            "status": [a[2] for a in accounts.values()],
        }
    )
    return AccountIndex.build(table, source="cases")


@dataclass
class Report:
    total: int = 0
    correct: int = 0
    false_mtch: int = 0
    cmtc_on_nmtc: int = 0
    matched_name_wrong: int = 0
    errors: int = 0
    confusion: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_category: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "false_mtch": self.false_mtch,
            "cmtc_on_nmtc": self.cmtc_on_nmtc,
            "matched_name_wrong": self.matched_name_wrong,
            "errors": self.errors,
            "confusion": {e: dict(self.confusion[e]) for e in CODES if e in self.confusion},
            "categories": {
                k: {"correct": v[0], "total": v[1], "accuracy": round(v[0] / v[1], 4)}
                for k, v in sorted(self.by_category.items())
            },
            "failures": self.failures,
        }


def evaluate(cases: list[Case], show_progress: bool = True) -> Report:
    holder = IndexHolder()
    holder.swap(cases_index(cases))
    verifier = Verifier(holder, [DEMO_BIC])
    agent = Agent(FinancialInstitutionId(DEMO_BIC))
    requester = Agent(FinancialInstitutionId("REQBDEFFXXX"))
    report = Report()
    bar = Progress(len(cases), "eval") if show_progress else None
    for case in cases:
        request = VerificationRequest(
            party=Party(name=case.query_name),
            party_account=PartyAccount(case.iban),
            party_agent=agent,
            requesting_agent=requester,
        )
        got: str
        try:
            outcome = verifier.outcome(request)
            got, matched, reason = outcome.code, outcome.matched_name or "", outcome.reason
        except ProblemError as exc:
            got, matched, reason = "ERROR", "", exc.code
            report.errors += 1
        ok = got == case.expected and (got != "CMTC" or matched == case.expected_matched_name)
        report.total += 1
        report.correct += ok
        report.confusion[case.expected][got] += 1
        cat = report.by_category[case.category]
        cat[0] += ok
        cat[1] += 1
        if got == "MTCH" and case.expected in ("NMTC", "NOAP"):
            report.false_mtch += 1
        if got == "CMTC" and case.expected == "NMTC":
            report.cmtc_on_nmtc += 1
        if got == case.expected == "CMTC" and matched != case.expected_matched_name:
            report.matched_name_wrong += 1
        if not ok:
            report.failures.append(
                {
                    "case_id": case.case_id,
                    "category": case.category,
                    "expected": case.expected,
                    "got": got,
                    "reason": reason,
                    "query": case.query_name,
                    "account": case.account_names,
                }
            )
        if bar:
            bar.advance()
    if bar:
        bar.finish(f"accuracy {report.accuracy:.1%}")
    return report


def render(report: Report) -> str:
    lines = [f"cases: {report.total}   correct: {report.correct}   accuracy: {report.accuracy:.1%}"]
    lines.append(
        f"false MTCH: {report.false_mtch}   CMTC on NMTC: {report.cmtc_on_nmtc}   "
        f"matchedName wrong: {report.matched_name_wrong}   errors: {report.errors}"
    )
    got_codes = [*CODES, "ERROR"] if report.errors else list(CODES)
    lines += [
        "",
        "confusion (rows: expected, columns: answered)",
        "expected " + "".join(f"{c:>7}" for c in got_codes),
    ]
    for e in CODES:
        if e in report.confusion:
            lines.append(f"{e:<9}" + "".join(f"{report.confusion[e][g]:>7}" for g in got_codes))
    lines += ["", f"{'category':<26}{'correct':>8}{'total':>7}{'accuracy':>10}"]
    for name, (ok, n) in sorted(report.by_category.items()):
        lines.append(f"{name:<26}{ok:>8}{n:>7}{ok / n:>10.1%}")
    if report.failures:
        lines += ["", "failures:"]
        lines += [
            f"  {f['case_id']} {f['category']}: expected {f['expected']}, got {f['got']} ({f['reason']})"
            for f in report.failures
        ]
    return "\n".join(lines)
