"""Transfer PGD: surrogate binding by the runner, weaker than white-box PGD, clear errors."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from torch import nn

from bench.api import ATTACKS, DefenseParams, FrontEnd, Identity, JobContext, Pipeline, Threat
from bench.attacks.pgd import PGD, PGDParams
from bench.attacks.transfer import TransferParams, TransferPGD
from bench.config import Normalization
from bench.errors import ConfigError, EvaluationError
from bench.jobs.attack import bind_surrogate, derived_seed, surrogate_pipeline
from bench.jobs.configs import AttackJobConfig, ClassifierFromSource, FrontEndJobConfig
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import Upstream


class Flip(FrontEnd):
    """Inverts two pixels: linear, in [0,1], and there the undefended gradient points the wrong way."""

    mask: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(16, dtype=torch.bool)
        mask[[0, 5]] = True
        self.register_buffer("mask", mask.view(1, 1, 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, 1 - x, x)


def binary_linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()


def labelled(pipe: Pipeline, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 4, 4, generator=g)
    return x, pipe.predict(x)


def test_transfer_from_the_undefended_classifier_is_no_stronger_than_white_box_pgd() -> None:
    """On a linear two-class pipeline PGD finds the exact worst case, so transfer success implies PGD's."""
    clf = binary_linear(seed=2)
    target = Pipeline(clf, Flip())
    x, y = labelled(target)
    threat = Threat("linf", 0.2)
    params = {"steps": 10}
    white = PGD(PGDParams(**params)).perturb(target, x, y, threat, JobContext())
    attack = TransferPGD(TransferParams(**params))
    attack.bind_surrogate(Pipeline(clf, Identity()))
    target.n_forward = target.n_backward = 0
    moved = attack.perturb(target, x, y, threat, JobContext())
    assert target.n_forward == 0 and target.n_backward == 0, "the target must not be queried"
    assert not threat.violations(x, moved).any()
    white_fooled = target.predict(white) != y
    transfer_fooled = target.predict(moved) != y
    assert bool((transfer_fooled <= white_fooled).all())
    assert 0 < int(transfer_fooled.sum()) <= int(white_fooled.sum())


def test_unbound_or_self_bound_transfer_is_refused() -> None:
    clf = binary_linear()
    target = Pipeline(clf, Identity())
    x, y = labelled(target, 4)
    attack = TransferPGD()
    with pytest.raises(EvaluationError, match="bind_surrogate"):
        attack.perturb(target, x, y, Threat("linf", 0.1), JobContext())
    attack.bind_surrogate(target)
    with pytest.raises(EvaluationError, match="white-box"):
        attack.perturb(target, x, y, Threat("linf", 0.1), JobContext())


class FakeUpstream:
    """Just what the surrogate helpers read from an :class:`Upstream`: the graph and model builders."""

    def __init__(self, graph: JobGraph, models: dict[str, nn.Module]) -> None:
        self.graph = graph
        self.models = models
        self.frontends_built = 0

    def classifier(self, key: str) -> nn.Module:
        return self.models[key]

    def guide(self, fe_key: str) -> nn.Module | None:
        deps = self.graph[fe_key].deps
        return self.models[deps[0]] if deps else None

    def frontend(self, key: str) -> FrontEnd:
        self.frontends_built += 1
        return Flip()


def graph_with(trainable: bool) -> tuple[JobSpec, FakeUpstream, dict[str, nn.Module]]:
    g = JobGraph()
    norm = Normalization(mean=[0.0], std=[1.0])
    guide, target = (
        g.add(
            JobSpec(
                f"classifier {name}",
                ClassifierFromSource(
                    arch=name, dataset="mnist", num_classes=2, normalization=norm, seed=0, source=name
                ),
            )
        )
        for name in ("guide", "target")
    )
    flip = FrontEndJobConfig(kind="flip", params=DefenseParams(), input_shape=(1, 4, 4), seed=0)
    fe = g.add(JobSpec("front-end flip", flip, (guide.key,) if trainable else ()))
    config = AttackJobConfig(
        attack="transfer-pgd",
        revision=1,
        params=TransferParams(),
        bpda=True,
        norm="linf",
        eps=0.1,
        **{"protocol": 3, "n_eval": 64, "eval_seed": 0, "batch_size": 64, "eot_samples": 3, "vote_draws": 5},
    )
    spec = g.add(JobSpec("transfer", config, (fe.key, target.key)))
    models = {guide.key: binary_linear(1), target.key: binary_linear(2)}
    return spec, FakeUpstream(g, models), {"guide": models[guide.key], "target": models[target.key]}


def test_runner_binds_the_undefended_surrogate() -> None:
    spec, upstream, models = graph_with(trainable=True)
    attack = ATTACKS.get("transfer-pgd")(TransferParams(steps=2))
    surrogate = bind_surrogate(attack, spec, cast(Upstream, upstream))
    assert surrogate is not None and cast(TransferPGD, attack).surrogate is surrogate
    assert surrogate.classifier is models["target"]
    assert isinstance(surrogate.frontend, Identity)


def test_runner_binds_the_guide_surrogate_with_its_own_randomness() -> None:
    spec, upstream, models = graph_with(trainable=True)
    attack = TransferPGD(TransferParams(surrogate="guide"))
    surrogate = bind_surrogate(attack, spec, cast(Upstream, upstream), bpda=False)
    assert surrogate is not None
    assert surrogate.classifier is models["guide"]
    assert isinstance(surrogate.frontend, Flip)
    assert surrogate.frontend.rng(torch.device("cpu")).initial_seed() == derived_seed("surrogate", spec.key)
    assert upstream.frontends_built == 1


def test_guide_surrogate_without_guides_is_a_config_error() -> None:
    spec, upstream, _ = graph_with(trainable=False)
    with pytest.raises(ConfigError, match="no guide classifiers.*surrogate: undefended"):
        bind_surrogate(TransferPGD(TransferParams(surrogate="guide")), spec, cast(Upstream, upstream))
    with pytest.raises(ConfigError, match="unknown surrogate"):
        surrogate_pipeline(spec, cast(Upstream, upstream), "oracle")


def test_attacks_without_a_surrogate_are_left_alone() -> None:
    spec, upstream, _ = graph_with(trainable=True)
    assert bind_surrogate(PGD(), spec, cast(Upstream, upstream)) is None
    assert not PGD.needs_surrogate and TransferPGD.needs_surrogate


def test_params_are_pgds_plus_the_surrogate() -> None:
    p = TransferParams(steps=7, restarts=2, surrogate="guide")
    assert p.pgd_params() == PGDParams(steps=7, restarts=2, keep="final")
    assert TransferPGD(p).crafter.params.steps == 7
    with pytest.raises(ValueError):
        TransferParams(surrogate="target")
