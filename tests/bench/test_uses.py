from __future__ import annotations

from bench.uses import EvaluationUse

OLD_STORE_LABEL = {
    "experiment": 0,
    "kind": "native",
    "relation": "native",
    "defense": "aaa",
    "defense_kind": "aaa",
    "guides": ["A"],
    "target": "A",
    "dataset": "mnist",
    "threat": "linf",
    "norm": "linf",
    "eps": 0.3,
    "attack": "pgd",
}


def test_labels_of_stores_written_before_arch_and_train_dataset_still_read() -> None:
    use = EvaluationUse.model_validate(OLD_STORE_LABEL)
    assert (use.arch, use.train_dataset, use.m, use.attacks) == ("", None, None, None)


def test_ensemble_and_cell_labels_appear_only_where_they_apply() -> None:
    plain = EvaluationUse.model_validate({**OLD_STORE_LABEL, "train_dataset": "mnist"})
    assert set(plain.model_dump(mode="json")) == {*OLD_STORE_LABEL, "arch", "train_dataset"}
    cell = plain.model_copy(update={"m": 2, "draw": 0, "attack": "worst-case", "attacks": ["pgd"]})
    assert {"m", "draw", "attacks"} <= set(cell.model_dump(mode="json"))
