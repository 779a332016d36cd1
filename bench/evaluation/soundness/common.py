"""Helpers the basic and the Carlini-style checks share."""

from __future__ import annotations

from bench.api import ATTACKS, Attack, AttackEvidence, CheckResult


def not_applicable(why: str) -> CheckResult:
    return CheckResult(True, f"not applicable: {why}")


def attack_class(a: AttackEvidence) -> type[Attack]:
    return ATTACKS.get(str(a.config["attack"]))


def bpda_of(a: AttackEvidence) -> bool:
    return bool(a.config.get("bpda", True))


def pct(count: int, n: int) -> str:
    return f"{100.0 * count / n:.1f}% ({count}/{n})"
