"""PGD on tiny models: projection invariants, restarts, pass counting, and that it actually attacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.api import ATTACKS, FrontEnd, Identity, JobContext, NonDifferentiable, Pipeline, Threat
from bench.attacks.pgd import PGD, PGDParams


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()


def data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 4, 4, generator=g)
    return x, torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_candidates_stay_in_threat(norm: str) -> None:
    x, y = data()
    pipe = Pipeline(linear_model(), Identity())
    threat = Threat(norm, 0.3)  # type: ignore[arg-type]
    adv = PGD(PGDParams(steps=7, restarts=3)).perturb(pipe, x, y, threat, JobContext())
    assert adv.shape == x.shape
    assert not threat.violations(x, adv).any()


def test_pgd_beats_the_clean_accuracy_of_a_linear_model() -> None:
    x, y = data(64)
    pipe = Pipeline(linear_model(), Identity())
    y = pipe.predict(x)  # label = prediction: clean accuracy 100%
    adv = PGD(PGDParams(steps=20)).perturb(pipe, x, y, Threat("linf", 0.5), JobContext())
    assert float((pipe.predict(adv) == y).float().mean()) < 0.2


def test_one_step_costs_one_forward_and_one_backward_per_replica() -> None:
    x, y = data(8)
    pipe = Pipeline(linear_model(), Identity())
    attack = PGD(PGDParams(steps=5, restarts=2, step_sizes=[0.01, 0.02]))
    attack.perturb(pipe, x, y, Threat("linf", 0.1), JobContext())
    replicas = 2 * 2
    assert pipe.n_backward == 5 * replicas * 8
    # steps + one final judgment pass over all replicas' candidates
    assert pipe.n_forward == 5 * replicas * 8 + replicas * 8
    assert attack.cost_per_example(pipe) == 5 * replicas


def test_single_replica_pgd_costs_at_most_k_passes() -> None:
    x, _ = data(8)
    pipe = Pipeline(linear_model(), Identity())
    y = pipe.predict(x)
    pipe.n_forward = 0
    PGD(PGDParams(steps=7)).perturb(pipe, x, y, Threat("linf", 1e-4), JobContext())
    assert (pipe.n_forward, pipe.n_backward) == (7 * 8, 7 * 8), "nothing fooled: every step runs on all"
    pipe.n_forward = pipe.n_backward = 0
    PGD(PGDParams(steps=20)).perturb(pipe, x, y, Threat("linf", 0.5), JobContext())
    assert pipe.n_backward < 20 * 8, "fooled examples leave the batch"


def test_dropping_fooled_examples_changes_no_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.attacks.pgd as pgd_module

    x, _ = data(64)
    pipe = Pipeline(linear_model(), Identity())
    y = pipe.predict(x)
    threat = Threat("linf", 0.12)
    params = PGDParams(steps=20, restarts=2)
    compacted = PGD(params).perturb(pipe, x, y, threat, JobContext())
    monkeypatch.setattr(pgd_module, "COMPACT_EVERY", 10**9)
    full = PGD(params).perturb(pipe, x, y, threat, JobContext())
    assert torch.equal(compacted, full)


def test_restarts_are_worst_case_per_example() -> None:
    """More restarts can only lower (never raise) the number of surviving examples for the same seed."""
    x, y = data(64)
    pipe = Pipeline(linear_model(), Identity())
    y = pipe.predict(x)
    survived = []
    for restarts in (1, 4):
        adv = PGD(PGDParams(steps=2, restarts=restarts)).perturb(
            pipe, x, y, Threat("linf", 0.15), JobContext()
        )
        survived.append(pipe.predict(adv) == y)
    assert int(survived[1].sum()) <= int(survived[0].sum())


def test_chunking_matches_unchunked() -> None:
    x, y = data(16)
    pipe = Pipeline(linear_model(), Identity())
    kwargs = dict(steps=3, restarts=4)
    a = PGD(PGDParams(**kwargs)).perturb(pipe, x, y, Threat("linf", 0.2), JobContext())
    b = PGD(PGDParams(**kwargs, max_batch=16)).perturb(pipe, x, y, Threat("linf", 0.2), JobContext())
    fooled_a = pipe.predict(a) != y
    fooled_b = pipe.predict(b) != y
    assert torch.equal(fooled_a, fooled_b)


def test_parameter_validation() -> None:
    with pytest.raises(ValueError):
        PGDParams(steps=0)
    with pytest.raises(ValueError, match="not both"):
        PGDParams(step_sizes=[0.1], rel_step_sizes=[0.1])
    with pytest.raises(ValueError, match="positive"):
        PGDParams(step_sizes=[-0.1])


def test_presets_record_their_protocol() -> None:
    norou = ATTACKS.get("pgd-norouzzadeh")()
    assert norou.params.alphas(0.03) == [0.008, 0.004, 0.0015]  # type: ignore[attr-defined]
    assert norou.params.restarts == 5 and norou.params.steps == 20  # type: ignore[attr-defined]
    cann = ATTACKS.get("pgd-cann")
    assert cann().params.alphas(8 / 255) == [pytest.approx(1.25 * 8 / 255)]  # type: ignore[attr-defined]
    appendix = cann(cann.Params.model_validate({"variant": "appendix"}))
    assert appendix.params.alphas(8 / 255) == [pytest.approx(1.25 * 8 / 100)]  # type: ignore[attr-defined]
    assert ATTACKS.get("pgd-vaishnavi-mnist")().params.restarts == 50  # type: ignore[attr-defined]
    fgsm = ATTACKS.get("fgsm")()
    assert fgsm.params.steps == 1 and not fgsm.params.random_start  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="works in linf"):
        cann().check(Threat("l2", 0.5))


class Quantize(FrontEnd):
    """Rounds to 4 grey levels: autograd gives a zero gradient, BPDA the identity's."""

    def __init__(self) -> None:
        super().__init__()
        self.q = NonDifferentiable(lambda x: torch.round(x * 3) / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x)


def test_bpda_restores_gradients_through_rounding() -> None:
    x, _ = data(8)
    naive = Pipeline(linear_model(), Quantize(), bpda=False)
    bpda = Pipeline(linear_model(), Quantize(), bpda=True)
    y = bpda.predict(x)
    ce = torch.nn.functional.cross_entropy
    _, g_naive = naive.loss_and_grad(x, y, lambda z, t: ce(z, t, reduction="none"))
    _, g_bpda = bpda.loss_and_grad(x, y, lambda z, t: ce(z, t, reduction="none"))
    assert float(g_naive.abs().sum()) == 0.0
    assert float(g_bpda.abs().sum()) > 0.0
    with torch.no_grad():
        assert torch.equal(naive(x), bpda(x)), "BPDA must not change the forward value"


class Noisy(FrontEnd):
    randomized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.rng(x.device), device=x.device)
        return (x + 0.05 * noise).clamp(0, 1)


def test_eot_averages_k_draws_in_one_pass() -> None:
    x, y = data(4)
    fe = Noisy()
    fe.reseed(0)
    pipe = Pipeline(linear_model(), fe, eot_samples=10, vote_draws=5)
    ce = torch.nn.functional.cross_entropy
    pipe.loss_and_grad(x, y, lambda z, t: ce(z, t, reduction="none"))
    assert pipe.n_forward == 40 and pipe.n_backward == 40
    pipe.predict(x)
    assert pipe.n_forward == 40 + 5 * 4


def test_defense_randomness_ignores_global_reseeding() -> None:
    x, _ = data(4)
    outs = []
    for _ in range(2):
        fe = Noisy()
        fe.reseed(123)
        torch.manual_seed(0)
        first = fe(x)
        torch.manual_seed(999)  # an attack reseeding the global RNG must not steer the defense
        outs.append((first, fe(x)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


class ShapeChanger(FrontEnd):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :2, :2]


def test_shape_changing_defense_is_refused() -> None:
    x, _ = data(2)
    from bench.errors import EvaluationError

    with pytest.raises(EvaluationError, match="changed the input shape"):
        Pipeline(linear_model(), ShapeChanger())(x)


class NaNClassifier(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 3), float("nan"))


def test_nan_logits_are_refused() -> None:
    from bench.errors import EvaluationError

    x, _ = data(2)
    with pytest.raises(EvaluationError, match="NaN or infinite logits"):
        Pipeline(NaNClassifier(), Identity()).predict(x)


def test_fgsm_takes_an_absolute_step_size() -> None:
    x, y = data(4)
    cls = ATTACKS.get("fgsm")
    attack = cls(cls.Params.model_validate({"step_sizes": [0.05]}))
    adv = attack.perturb(Pipeline(linear_model(), Identity()), x, y, Threat("linf", 0.3), JobContext())
    assert float((adv - x).abs().max()) == pytest.approx(0.05, abs=1e-6)
    assert attack.describe()["step_sizes_run"] == [0.05]


def test_presets_record_the_step_size_they_derive_from_epsilon() -> None:
    cls = ATTACKS.get("pgd-cann")
    attack = cls(cls.Params.model_validate({"steps": 1, "variant": "appendix"}))
    attack.perturb(Pipeline(linear_model(), Identity()), *data(2), Threat("linf", 0.1), JobContext())
    assert attack.describe()["step_sizes_run"] == [pytest.approx(0.1 * 1.25 * 255 / 100)]


def test_vaishnavi_presets_are_the_papers_steps_and_restarts() -> None:
    """Tables 2, 4 and 5: 100 steps of 0.01 x 50 restarts (MNIST, Fashion-MNIST), 20 of 2/255 x 10 (CIFAR)."""
    mnist, cifar = ATTACKS.get("pgd-vaishnavi-mnist"), ATTACKS.get("pgd-vaishnavi-cifar")
    for cls, steps, restarts, step in ((mnist, 100, 50, 0.01), (cifar, 20, 10, 2 / 255)):
        p = cls().params
        assert (p.steps, p.restarts) == (steps, restarts)  # type: ignore[attr-defined]
        assert p.alphas(0.3) == p.alphas(0.2) == [step]  # type: ignore[attr-defined]
        relative = cls.Params.model_validate({"rel_step_sizes": [0.25]})
        assert relative.alphas(0.2) == [pytest.approx(0.05)], "a relative step replaces the paper's"  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="not both"):
            cls.Params.model_validate({"rel_step_sizes": [0.25], "step_sizes": [0.01]})
