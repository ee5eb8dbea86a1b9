"""The results: the targets checked, a table for people, a JSON file for comparing runs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from server.settings import Settings
from tests.benchmarks.neighbours.database import Cast, Statements, Watch
from tests.benchmarks.neighbours.load import Answer, Tally

ALONE_LIMIT_MS = 1000.0
VICTIM_LIMIT_MS = 1000.0
VICTIM_RATIO = 3.0
RSS_GROWTH_LIMIT_MIB = 300.0
POOL = Settings.model_fields["db_pool_size"].default  # the server runs with default settings


@dataclass
class Alone:
    """One attack document sent with nothing else running."""

    document: str
    caller: str
    answer: Answer
    statements: Statements
    cancelled: int  # its statements still running when the answer (or the wait) ended

    @property
    def passed(self) -> bool:
        answered = self.answer.status is not None
        return self.answer.refused or (answered and self.answer.latency_ms <= ALONE_LIMIT_MS)

    def summary(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "caller": self.caller,
            "status": self.answer.status,
            "codes": self.answer.codes,
            "refused": self.answer.refused,
            "wall_ms": round(self.answer.latency_ms, 1),
            "db_statements_ms": round(self.statements.total_ms, 1),
            "db_longest_statement_ms": round(self.statements.longest_ms, 1),
            "cancelled_statements": self.cancelled,
        }


@dataclass
class PhaseCost:
    """One phase: its length, the server's CPU time (and its wait for a core) and what it
    logged, and for context the benchmark's own CPU time (without the victim's process) and
    how busy the machine was."""

    wall_seconds: float
    cpu_seconds: float
    cpu_wait_seconds: float
    load_cpu_seconds: float
    machine_busy: float  # share of all cores' time
    problems: Counter[str]

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "wall_seconds": round(self.wall_seconds, 1),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "cores": round(self.cores, 2),
            "cpu_wait_seconds": round(self.cpu_wait_seconds, 2),
            "load_cpu_seconds": round(self.load_cpu_seconds, 2),
            "machine_busy": round(self.machine_busy, 2),
            "logged": dict(self.problems.most_common()),
        }


@dataclass
class Results:
    started: str
    commit: str
    database: str
    server_log: str
    cast: Cast
    settings: dict[str, Any]
    quiet: Tally = field(default_factory=Tally)
    under_attack: Tally = field(default_factory=Tally)
    neighbours: dict[str, Tally] = field(default_factory=dict)
    alone: list[Alone] = field(default_factory=list)
    rss_mib: dict[str, float] = field(default_factory=dict)  # before, after, peak
    # Under attack, the server's connections in use and running a statement: mean, most.
    connections: dict[str, dict[str, float]] = field(default_factory=dict)
    server_processes: int = 0
    phases: dict[str, PhaseCost] = field(default_factory=dict)
    cancelled_after_attack: int = 0
    logged_after_attack: Counter[str] = field(default_factory=Counter)

    def rss_growth_mib(self) -> float:
        return max(self.rss_mib["peak"], self.rss_mib["after"]) - self.rss_mib["before"]

    def summary(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "commit": self.commit,
            "database": self.database,
            "server_log": self.server_log,
            "cast": vars(self.cast),
            "settings": self.settings,
            "victim": {"quiet": self.quiet.summary(), "under_attack": self.under_attack.summary()},
            "neighbours": {name: tally.summary() for name, tally in self.neighbours.items()},
            "alone": [alone.summary() for alone in self.alone],
            "server": {
                "processes": self.server_processes,
                "rss_mib": {k: round(v, 1) for k, v in self.rss_mib.items()},
                "rss_growth_mib": round(self.rss_growth_mib(), 1),
                "connections_under_attack": self.connections,
                "phases": {name: cost.summary() for name, cost in self.phases.items()},
                "statements_cancelled_after_attack": self.cancelled_after_attack,
                "logged_after_attack": dict(self.logged_after_attack.most_common()),
            },
            "checks": [vars(check) for check in checks(self)],
        }


@dataclass(frozen=True)
class Check:
    target: str
    passed: bool
    detail: str


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _sampled_ms(value: float) -> str:
    """Statements shorter than a sample of pg_stat_activity may go unseen."""
    return _ms(value) if value >= Watch.SAMPLE_MS else f"<{Watch.SAMPLE_MS:g} ms"


def checks(results: Results) -> list[Check]:
    quiet = results.quiet.summary()["p99_ms"]
    attacked = results.under_attack.summary()["p99_ms"]
    ratio = attacked / quiet if quiet and attacked is not None else None
    tallies = [results.quiet, results.under_attack, *results.neighbours.values()]
    server_errors = sum(t.server_errors for t in tallies) + sum(
        1 for a in results.alone if a.answer.status is not None and a.answer.status >= 500
    )
    internal = sum(t.internal_errors for t in tallies) + sum(
        a.answer.codes.count("INTERNAL_SERVER_ERROR") for a in results.alone
    )
    slow = [
        f"{a.document} ({_ms(a.answer.latency_ms)}"
        + (")" if a.answer.status is not None else ", no answer)")
        for a in results.alone
        if not a.passed
    ]
    victim = results.quiet.sent + results.under_attack.sent
    victim_ok = results.quiet.ok + results.under_attack.ok
    growth = results.rss_growth_mib()
    return [
        Check(
            f"victim p99 under attack <= {VICTIM_RATIO:g}x quiet p99 and < {_ms(VICTIM_LIMIT_MS)}",
            ratio is not None
            and ratio <= VICTIM_RATIO
            and attacked is not None
            and attacked < VICTIM_LIMIT_MS,
            f"{_ms(attacked)} under attack, quiet {_ms(quiet)}"
            + (f" ({ratio:.1f}x)" if ratio is not None else ""),
        ),
        Check(
            "no answer 5xx or INTERNAL_SERVER_ERROR",
            server_errors == 0 and internal == 0,
            f"{server_errors} answered 5xx, {internal} INTERNAL_SERVER_ERROR",
        ),
        Check(
            f"server RSS growth < {RSS_GROWTH_LIMIT_MIB:g} MiB",
            growth < RSS_GROWTH_LIMIT_MIB,
            f"{growth:,.0f} MiB ({results.rss_mib['before']:,.0f} before, "
            f"{results.rss_mib['peak']:,.0f} at most, {results.rss_mib['after']:,.0f} after)",
        ),
        Check(
            f"each attack document <= {_ms(ALONE_LIMIT_MS)} alone, or refused before it runs",
            not slow,
            "; ".join(slow) if slow else f"all {len(results.alone)}",
        ),
        Check(
            "victim answered (200, data, no errors) every time",
            victim_ok == victim,
            f"{victim_ok} of {victim}",
        ),
    ]


def _counts(counter: Counter[str]) -> str:
    return " ".join(f"{key}:{n}" for key, n in counter.most_common()) or "-"


def table(results: Results) -> str:
    lines = ["", f"Noisy neighbours, {results.started}, commit {results.commit}", ""]
    header = f"{'caller':<28}{'sent':>6}{'ok':>6}{'p50':>10}{'p99':>10}  statuses / codes"
    lines += [header, "-" * len(header)]
    rows = {
        "victim, quiet": results.quiet,
        "victim, under attack": results.under_attack,
        **results.neighbours,
    }
    for name, tally in rows.items():
        s = tally.summary()
        unanswered = f" unanswered:{tally.unanswered}" if tally.unanswered else ""
        lines.append(
            f"{name:<28}{tally.sent:>6}{tally.ok:>6}{_ms(s['p50_ms']):>10}{_ms(s['p99_ms']):>10}"
            f"  {_counts(tally.statuses)}{unanswered} / {_counts(tally.codes)}"
        )
    quiet, attacked = results.quiet.summary(), results.under_attack.summary()
    for share in ("p50", "p99"):
        before, after = quiet[f"{share}_ms"], attacked[f"{share}_ms"]
        if before and after is not None:
            lines.append(f"  victim {share} under attack / quiet: {after / before:.1f}x")

    lines += [
        "",
        f"{'attack document alone':<34}{'caller':<12}{'status':>7}{'wall':>11}"
        f"{'db, all':>11}{'longest':>11}  codes",
    ]
    for a in results.alone:
        status = "-" if a.answer.status is None else str(a.answer.status)
        lines.append(
            f"{a.document:<34}{a.caller:<12}{status:>7}{_ms(a.answer.latency_ms):>11}"
            f"{_sampled_ms(a.statements.total_ms):>11}{_sampled_ms(a.statements.longest_ms):>11}  "
            + (" ".join(a.answer.codes) or "-")
            + (f" (cancelled {a.cancelled})" if a.cancelled else "")
        )

    rss = results.rss_mib
    lines += [
        "",
        f"server: {results.server_processes} process(es); RSS {rss['before']:,.0f} MiB before, "
        f"{rss['peak']:,.0f} at most, {rss['after']:,.0f} after",
    ]
    if results.connections:
        in_use, running = results.connections["in_use"], results.connections["running"]
        lines.append(
            f"  under attack, its connections in use {in_use['mean']:g} on average, "
            f"{in_use['most']:g} at most (a pool holds {POOL}); running a statement "
            f"{running['mean']:g} on average, {running['most']:g} at most"
        )
    for name, cost in results.phases.items():
        lines.append(
            f"  {name:<7}{cost.wall_seconds:6.1f} s wall, {cost.cpu_seconds:5.1f} s CPU "
            f"({cost.cores:.2f} cores), {cost.cpu_wait_seconds:.1f} s waiting for a core; "
            f"the load process {cost.load_cpu_seconds:.1f} s CPU; "
            f"the machine {cost.machine_busy:.0%} busy"
            + "".join(f"\n    logged {n}x {problem}" for problem, n in cost.problems.most_common())
        )
    if results.cancelled_after_attack:
        lines.append(
            f"  after the attack: {results.cancelled_after_attack} statement(s) still running "
            "were cancelled"
            + "".join(
                f"\n    logged {n}x {problem}"
                for problem, n in results.logged_after_attack.most_common()
            )
        )
    lines.append("")
    for check in checks(results):
        lines.append(f"{'PASS' if check.passed else 'FAIL'}  {check.target}: {check.detail}")
    return "\n".join(lines)
