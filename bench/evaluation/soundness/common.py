"""Helpers the basic and the Carlini-style checks share."""

from __future__ import annotations

from bench.api import ATTACKS, Attack, AttackEvidence, BpdaMode, CheckResult


def not_applicable(why: str) -> CheckResult:
    return CheckResult(True, f"not applicable: {why}")


def attack_class(a: AttackEvidence) -> type[Attack]:
    return ATTACKS.get(str(a.config["attack"]))


def bpda_of(a: AttackEvidence) -> BpdaMode:
    mode = a.config.get("bpda", True)
    return "frontend" if mode == "frontend" else bool(mode)


def bpda_text(mode: BpdaMode) -> str:
    return "bpda through the whole front-end" if mode == "frontend" else f"bpda {'on' if mode else 'off'}"


def pct(count: int, n: int) -> str:
    return f"{100.0 * count / n:.1f}% ({count}/{n})"
