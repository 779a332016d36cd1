"""Pairing a run's result rows with reference rows: same job, same place in the matrix, or neither.

A job key hashes the job's whole resolved config, its upstream jobs' keys and its data, so two rows of one
key and metric measured the same thing with the same defense and classifier configs, and may be compared.
Rows whose keys differ but whose labels agree (defense, guides, target, threat, radius, attack, metric) sit
at the same place of the matrix with something changed: those are *drift*, reported with what changed
(n, radius, scale, test examples, attack or evaluation config, front-end or classifier job) and never
tested, since a number measured another way is no evidence of a regression. Failing that, a row whose
labels agree but for the radius (a matrix that moved ε) is drift too, when that pairing is unambiguous.
What is left is *missing* from the run (a reference row with no counterpart) or *new* in it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]

#: Where a row sits in its matrix, by the matrix's own names.
PLACE = ("defense", "guides", "target", "threat", "eps", "attack", "metric", "epsilon")
#: The same, but for the radius: pairs rows whose matrix moved ε.
COARSE_PLACE = ("defense", "guides", "target", "threat", "attack", "metric")
#: Row fields whose change is drift, with the words a report uses for them (``scale`` is told note by note).
FIELDS = {
    "n": "n",
    "epsilon": "eps",
    "examples_sha256": "test examples",
    "attacks": "cell's attacks",
    "cascade": "cascade",
    "standard_protocol": "standard protocol",
}


@dataclass(frozen=True)
class Pair:
    current: Row
    baseline: Row
    #: ``key`` for rows of one job, ``labels`` for rows at the same place whose jobs differ.
    by: str
    #: For a pair by labels, what differs ("n: 500 → 200", "attack config params.steps: 100 → 20").
    drift: tuple[str, ...] = ()


@dataclass(frozen=True)
class Matching:
    compared: tuple[Pair, ...]
    drifted: tuple[Pair, ...]
    #: Reference rows with no counterpart in the run, and rows of the run with none in the reference.
    missing: tuple[Row, ...]
    new: tuple[Row, ...]

    @property
    def overlap(self) -> bool:
        return bool(self.compared or self.drifted)


def match(current: Sequence[Row], baseline: Sequence[Row]) -> Matching:
    by_key = {_key(r): r for r in baseline}
    compared = [Pair(r, by_key[_key(r)], "key") for r in current if _key(r) in by_key]
    taken = {_key(p.baseline) for p in compared}
    rest_current = [r for r in current if _key(r) not in by_key]
    rest_baseline = [r for r in baseline if _key(r) not in taken]
    drifted: list[Pair] = []
    for place in (PLACE, COARSE_PLACE):
        pairs, rest_current, rest_baseline = _pair_by(place, rest_current, rest_baseline)
        drifted += [Pair(c, b, "labels", describe_drift(c, b)) for c, b in pairs]
    return Matching(tuple(compared), tuple(drifted), tuple(rest_baseline), tuple(rest_current))


def _key(row: Row) -> tuple[Hashable, ...]:
    return (row["job_key"], row["metric"], _number(row["epsilon"]))


def _place(row: Row, fields: Sequence[str]) -> tuple[Hashable, ...]:
    return tuple(_number(row[f]) if f in ("eps", "epsilon") else _hashable(row[f]) for f in fields)


def _pair_by(
    fields: Sequence[str], current: Sequence[Row], baseline: Sequence[Row]
) -> tuple[list[tuple[Row, Row]], list[Row], list[Row]]:
    """Pairs of rows alone at their place on each side; rows sharing a place stay unpaired, not guessed."""
    here, there = defaultdict(list), defaultdict(list)
    for r in current:
        here[_place(r, fields)].append(r)
    for r in baseline:
        there[_place(r, fields)].append(r)
    pairs = [(rows[0], there[p][0]) for p, rows in here.items() if len(rows) == 1 and len(there[p]) == 1]
    paired = {id(r) for pair in pairs for r in pair}
    return pairs, [r for r in current if id(r) not in paired], [r for r in baseline if id(r) not in paired]


def describe_drift(current: Row, baseline: Row) -> tuple[str, ...]:
    """What differs between two rows at one place, from the row's own fields to its upstream jobs."""
    notes = [
        f"{name}: {_short(baseline[f])} → {_short(current[f])}"
        for f, name in FIELDS.items()
        if _same(current[f]) != _same(baseline[f])
    ]
    ours, theirs = (set(str(r["scale"]).split("; ")) for r in (current, baseline))
    notes += [f"scale note gone: {note}" for note in sorted(theirs - ours)]
    notes += [f"scale note new: {note}" for note in sorted(ours - theirs)]
    config = "attack config" if current["job_kind"] == "attack" else "evaluation config"
    notes += _config_drift(config, current["config"], baseline["config"])
    for side in ("frontend", "classifier"):
        if current[f"{side}_job"] != baseline[f"{side}_job"]:
            what = "front-end" if side == "frontend" else "classifier"
            changes = _config_drift(f"{what} config", current[f"{side}_config"], baseline[f"{side}_config"])
            notes += changes or [f"{what} job differs (same config: its data or code version changed)"]
    return tuple(notes) or ("job key differs, stored configs agree (its data or code version changed)",)


def _config_drift(what: str, current: Any, baseline: Any) -> list[str]:
    if current is None or baseline is None:
        return [] if current is baseline else [f"{what}: not stored on one side"]
    ours, theirs = _flatten(current), _flatten(baseline)
    return [
        f"{what} {path}: {_short(theirs.get(path, '(absent)'))} → {_short(ours.get(path, '(absent)'))}"
        for path in sorted(ours.keys() | theirs.keys())
        if ours.get(path, _ABSENT) != theirs.get(path, _ABSENT)
    ]


_ABSENT = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _same(value: Any) -> Hashable:
    return _number(value) if isinstance(value, float) else _hashable(value)


def _number(value: Any) -> Any:
    """Radii rounded, so that 0.3 read back from a JSON export matches the store's 0.3."""
    return None if value is None else round(float(value), 9)


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value  # type: ignore[no-any-return]


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"
