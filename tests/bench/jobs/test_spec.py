from __future__ import annotations

import pytest

from bench.api import DefenseParams
from bench.config import Normalization
from bench.jobs.configs import CellJobConfig, ClassifierFromSource, FrontEndJobConfig
from bench.jobs.spec import JobGraph, JobSpec, content_key
from bench.uses import ClassifierUse, FrontEndUse


def cell(eps: float = 0.3) -> CellJobConfig:
    evaluation = {"protocol": 3, "n_eval": 10, "eval_seed": 0, "batch_size": 5, "eot_samples": 2}
    return CellJobConfig(norm="linf", eps=eps, checks=True, n_checks=5, vote_draws=3, **evaluation)


def classifier(arch: str) -> ClassifierFromSource:
    norm = Normalization(mean=[0.0], std=[1.0])
    return ClassifierFromSource(
        arch=arch, dataset="mnist", num_classes=10, normalization=norm, seed=0, source=arch
    )


def test_key_covers_config_deps_and_data() -> None:
    base = JobSpec("a", cell(), ("u",), "data1")
    assert JobSpec("renamed", cell(), ("u",), "data1").key == base.key, "labels are not content"
    assert JobSpec("a", cell(), ("u",), "data1", ("note",)).key == base.key
    for other in (
        JobSpec("a", cell(0.31), ("u",), "data1"),
        JobSpec("a", cell(), ("v",), "data1"),
        JobSpec("a", cell(), ("u",), "data2"),
    ):
        assert other.key != base.key


def test_key_hashes_the_kind_and_the_settings_dump() -> None:
    spec = JobSpec("a", cell(), ("u",), "data1")
    assert spec.kind == "cell"
    assert spec.config == cell().model_dump(mode="json")
    assert spec.key == content_key("cell", spec.config, ("u",), "data1")
    assert content_key("attack", spec.config, ("u",), "data1") != spec.key


def test_fields_that_do_not_apply_are_absent_from_the_config() -> None:
    untrained = FrontEndJobConfig(kind="none", params=DefenseParams(), input_shape=(1, 28, 28), seed=0)
    dumped = {"kind": "none", "params": {}, "input_shape": [1, 28, 28], "seed": 0}
    assert untrained.model_dump(mode="json") == dumped
    trained = untrained.model_copy(update={"dataset": "mnist", "n_train": 100})
    assert trained.model_dump(mode="json")["n_train"] == 100
    assert JobSpec("t", trained).key != JobSpec("u", untrained).key


def test_settings_as_refuses_another_kind() -> None:
    spec = JobSpec("a", cell())
    assert spec.settings_as(CellJobConfig).eps == 0.3
    with pytest.raises(TypeError, match="cell job"):
        spec.settings_as(FrontEndJobConfig)


def test_graph_dedupes_and_keeps_every_use() -> None:
    g = JobGraph()
    up = g.add(JobSpec("A", classifier("a")), ClassifierUse(classifier="A"))
    again = g.add(JobSpec("A2", classifier("a")), ClassifierUse(classifier="A2"))
    g.add(JobSpec("A2", classifier("a")), ClassifierUse(classifier="A2"))
    assert again is up and len(g) == 1
    assert g.uses[up.key] == [ClassifierUse(classifier="A"), ClassifierUse(classifier="A2")]
    with pytest.raises(TypeError, match="not an evaluating job"):
        g.evaluation_use(up.key)
    with pytest.raises(ValueError, match="before its upstream"):
        g.add(JobSpec("x", cell(), ("missing",)), FrontEndUse(defense="d", guides=[]))
