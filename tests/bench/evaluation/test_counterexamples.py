"""Folding adversarial examples found elsewhere (smaller radii, the checks' attacks) into a cell."""

from __future__ import annotations

import torch

from bench.evaluation.counterexamples import Found, fold, padded


def mask(bits: str) -> torch.Tensor:
    return torch.tensor([b == "1" for b in bits])


def test_examples_broken_at_a_smaller_radius_count_and_the_missing_attacks_are_named() -> None:
    worst = mask("111100")
    found = [Found("fgsm at eps=0.1", mask("100010")), Found("check eps-sweep-to-chance", mask("010000"))]
    folded, verdict = fold(worst, found, ["pgd", "autoattack"])
    assert folded.tolist() == mask("001100").tolist()
    assert not verdict.passed and verdict.unreliable_attacks == ("pgd", "autoattack")
    assert verdict.detail.startswith("pgd, autoattack left 2 example(s) robust")
    assert "fgsm at eps=0.1 (1); check eps-sweep-to-chance (1)" in verdict.detail


def test_finds_the_cell_already_counted_change_nothing() -> None:
    worst = mask("1100")
    folded, verdict = fold(worst, [Found("pgd at eps=0.1", mask("0011"))], ["pgd"])
    assert torch.equal(folded, worst) and verdict.passed
    assert "broke every example also broken by pgd at eps=0.1" in verdict.detail


def test_nothing_found_is_not_applicable() -> None:
    folded, verdict = fold(mask("10"), [], ["pgd"])
    assert folded.tolist() == [True, False] and verdict.passed and verdict.detail.startswith("not applicable")


def test_a_check_subset_is_padded_to_the_cell() -> None:
    assert padded(mask("11"), 4).tolist() == [True, True, False, False]
