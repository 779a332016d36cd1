"""A check's outcome as a table for a person and as JSON for CI."""

from __future__ import annotations

from typing import Any

from bench.regression.matching import Row
from bench.regression.verdict import Cell, Check, ExitCode

#: What each exit code means, in the words the last line of a check prints.
MEANING = {
    ExitCode.OK: "ok: no row changed beyond chance",
    ExitCode.REGRESSION: "FAIL: rows regressed beyond chance",
    ExitCode.NO_OVERLAP: "no overlap: the reference shares no row with the run",
    ExitCode.INCOMPLETE: "incomplete: nothing regressed, but reference rows drifted or are missing",
}


def place(row: Row) -> str:
    guides = "+".join(row["guides"] or ()) or "-"
    where = f"{row['defense']} [{guides}] -> {row['target']}, {row['threat']} {_g(row['eps'])}"
    radius = "" if row["epsilon"] == row["eps"] else f" at radius {_g(row['epsilon'])}"
    return f"{where}, {row['attack']}, {row['metric']}{radius}"


def text(check: Check, current_source: str, baseline_source: str) -> list[str]:
    code = check.exit_code
    lines = [
        f"run {_name(check.current)} of {current_source}",
        f"  against reference run {_name(check.baseline)} of {baseline_source}",
        f"{len(check.cells)} rows of the same jobs compared at level {check.level:g}, "
        f"{check.correction}-corrected; McNemar's exact test where both stored outcomes on the same "
        "examples, else Fisher's exact test",
    ]
    if check.cells:
        lines += ["", *_table(check.cells)]
    if check.matching.drifted:
        lines += ["", "config drift, not compared (same place in the matrix, another job):"]
        for pair in check.matching.drifted:
            lines += [f"  {place(pair.current)}", *(f"    {note}" for note in pair.drift)]
    for title, rows in (
        ("missing from the run (in the reference only):", check.matching.missing),
        ("new in the run (no reference row):", check.matching.new),
    ):
        if rows:
            lines += ["", title, *(f"  {place(r)}" for r in rows)]
    if check.regressions:
        lines += ["", "regressions:"]
        lines += [f"  {place(c.pair.current)}: {c.reason}" for c in check.regressions]
    lines += ["", f"exit {int(code)}: {MEANING[code]}"]
    return lines


def _table(cells: tuple[Cell, ...]) -> list[str]:
    header: tuple[str, ...] = ("status", "defense", "guides", "target", "threat", "attack", "metric", "n")
    header += ("reference", "now", "change", "test", "p", "p adj.")
    rows = []
    for c in cells:
        cur, ref = c.pair.current, c.pair.baseline
        test: str = c.difference.test
        if c.difference.lost is not None:
            test += f" -{c.difference.lost}/+{c.difference.gained}"
        rows.append(
            (
                c.status.upper() if c.status == "regression" else c.status,
                str(cur["defense"]),
                "+".join(cur["guides"] or ()) or "-",
                str(cur["target"]),
                f"{cur['threat']} {_g(cur['eps'])}",
                str(cur["attack"]),
                str(cur["metric"]) + ("" if cur["epsilon"] == cur["eps"] else f" r={_g(cur['epsilon'])}"),
                str(cur["n"]),
                f"{100 * ref['value']:.1f}%",
                f"{100 * cur['value']:.1f}%",
                f"{100 * c.change:+.1f}",
                test,
                f"{c.difference.p_value:.2g}",
                f"{c.p_adjusted:.2g}",
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]


def as_json(check: Check, current_source: str, baseline_source: str) -> dict[str, Any]:
    code = check.exit_code
    return {
        "exit_code": int(code),
        "result": code.name.lower().replace("_", "-"),
        "level": check.level,
        "correction": check.correction,
        "current": {**check.current, "source": current_source},
        "baseline": {**check.baseline, "source": baseline_source},
        "compared": [
            {
                **_labels(c.pair.current),
                "status": c.status,
                "reason": c.reason,
                "reference": c.pair.baseline["value"],
                "current": c.pair.current["value"],
                "change": c.change,
                "test": c.difference.test,
                "lost": c.difference.lost,
                "gained": c.difference.gained,
                "p_value": c.difference.p_value,
                "p_adjusted": c.p_adjusted,
            }
            for c in check.cells
        ],
        "drift": [
            {**_labels(p.current), "reference_job_key": p.baseline["job_key"], "changes": list(p.drift)}
            for p in check.matching.drifted
        ],
        "missing": [_labels(r) for r in check.matching.missing],
        "new": [_labels(r) for r in check.matching.new],
    }


def _labels(row: Row) -> dict[str, Any]:
    keys = ("job_key", "defense", "guides", "target", "threat", "eps", "attack", "metric", "epsilon", "n")
    return {k: row[k] for k in keys}


def _name(run: dict[str, Any]) -> str:
    commit = run["git_commit"] or "unknown commit"
    return f"{run['run_id']} ({run['matrix']}, {commit}, {run['run_status']})"


def _g(value: Any) -> str:
    return f"{float(value):g}"
