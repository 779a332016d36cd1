"""Job configs dump to exactly the dicts job keys have always hashed."""

from __future__ import annotations

from bench.api import RECIPES
from bench.attacks.pgd import PGDParams
from bench.config import Normalization
from bench.jobs.configs import AttackJobConfig, ClassifierFromWeights, TrainedClassifier

EVALUATION = {"protocol": 3, "n_eval": 500, "eval_seed": 0, "batch_size": 250, "eot_samples": 20}
NORM = Normalization(mean=[0.1307], std=[0.3081])


def test_plugin_parameters_dump_with_all_their_fields() -> None:
    params = PGDParams(steps=100)
    config = AttackJobConfig(
        attack="pgd", revision=1, params=params, bpda=True, norm="linf", eps=0.3, vote_draws=21, **EVALUATION
    )
    dumped = config.model_dump(mode="json")
    assert dumped["params"] == params.model_dump(mode="json")
    assert dumped["params"]["rel_step_sizes"] is None, "a parameter's null is content and stays"
    rest = {"attack": "pgd", "revision": 1, "bpda": True, "norm": "linf", "eps": 0.3, "vote_draws": 21}
    assert dumped == {**rest, "params": dumped["params"], **EVALUATION}
    assert config.params is params


def test_each_classifier_origin_dumps_only_its_own_fields() -> None:
    common = {"arch": "mnist-c", "dataset": "mnist", "num_classes": 10, "normalization": NORM, "seed": 0}
    weights = ClassifierFromWeights(**common, weights_sha256="a" * 64).model_dump(mode="json")
    assert weights == {**common, "normalization": {"mean": [0.1307], "std": [0.3081]}, "origin": "weights",
                       "weights_sha256": "a" * 64}
    recipe = RECIPES.get("mnist")
    params = recipe.Params.model_validate({"epochs": 1})
    trained = TrainedClassifier(**common, recipe="mnist", train=params).model_dump(mode="json")
    assert trained["origin"] == "train" and trained["train"] == params.model_dump(mode="json")
    assert "weights_sha256" not in trained and "source" not in trained


def test_bpda_through_the_whole_front_end_and_the_standard_protocol_dump_only_where_set() -> None:
    def dumped(**fields: object) -> dict[str, object]:
        config = AttackJobConfig(attack="pgd", revision=1, params=PGDParams(), norm="linf", eps=0.3,
                                 vote_draws=21, **EVALUATION, **fields)
        return config.model_dump(mode="json")

    plain = dumped(bpda=True)
    assert plain["bpda"] is True and "standard_protocol" not in plain  # the keys of every stored attack job
    assert dumped(bpda=False)["bpda"] is False
    standard = dumped(bpda="frontend", standard_protocol=1)
    assert (standard["bpda"], standard["standard_protocol"]) == ("frontend", 1)
