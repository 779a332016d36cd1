"""``run_attack``: clean answers of a randomized pipeline do not depend on which attack follows; the examples
attacked (``only``); the dead-gradient probe of robust examples."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import (
    ATTACKS,
    Attack,
    DatasetInfo,
    FrontEnd,
    Identity,
    ImageData,
    JobContext,
    Pipeline,
    Threat,
)
from bench.attacks.pgd import PGD, PGDParams
from bench.evaluation.run_attack import run_attack

INFO = DatasetInfo("tiny", 3, (1, 4, 4), (0.5,), (0.5,), 64, 64)


class Noisy(FrontEnd):
    randomized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.4 * torch.randn(x.shape, generator=self.rng(x.device), device=x.device)).clamp(0, 1)


def test_attacks_of_one_cell_see_the_same_clean_answers_of_a_randomized_pipeline() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(64, 1, 4, 4, generator=g) * 255).round().to(torch.uint8)
    data = ImageData(images, torch.randint(0, 3, (64,), generator=g), "tiny", INFO)
    cleans = []
    for attack_seed in (1, 2):
        frontend = Noisy()
        frontend.reseed(7)  # the cell's judging seed, the same for every attack job
        pipe = Pipeline(model, frontend, eot_samples=2, vote_draws=5)
        attack = ATTACKS.get("pgd")(ATTACKS.get("pgd").Params.model_validate({"steps": 2}))
        out = run_attack(pipe, attack, data, Threat("linf", 0.1), JobContext(), 16, attack_seed)
        cleans.append(out.clean)
        assert frontend.rng(torch.device("cpu")).initial_seed() == attack_seed
    assert torch.equal(cleans[0], cleans[1])
    # and the noise is strong enough that unshared draws would disagree somewhere
    frontend = Noisy()
    frontend.reseed(8)
    other = Pipeline(model, frontend, vote_draws=5)
    assert not torch.equal(torch.cat([other.predict(x) == y for x, y in data.batches(16)]), cleans[0])


class CutGraph(FrontEnd):
    """Its output has no graph back to the input: every gradient through it is exactly zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.detach() * 255).round() / 255


def tiny_cell(frontend: FrontEnd) -> tuple[nn.Module, ImageData]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(64, 1, 4, 4, generator=g) * 255).round().to(torch.uint8)
    with torch.no_grad():
        labels = Pipeline(model, frontend).predict(images.float() / 255)
    return model, ImageData(images, labels, "tiny", INFO)


def pgd(params: dict[str, object]) -> Attack:
    cls = ATTACKS.get("pgd")
    return cls(cls.Params.model_validate(params))


def test_robust_examples_of_a_gradient_attack_are_probed_and_the_probe_is_counted() -> None:
    model, data = tiny_cell(Identity())
    weak = pgd({"steps": 3, "step_sizes": [1e-3], "random_start": False})
    out = run_attack(Pipeline(model, Identity()), weak, data, Threat("linf", 0.3), JobContext(), 16)
    robust = int(out.robust.sum())
    assert out.dead is not None and robust > 0 and not bool(out.dead.any())
    assert out.n_backward == 3 * len(data) + robust, "one more backward pass per robust example"
    cut = run_attack(Pipeline(model, CutGraph()), weak, data, Threat("linf", 0.3), JobContext(), 16)
    assert cut.dead is not None and bool(cut.robust.all()) and torch.equal(cut.dead, cut.robust)


def test_attacks_without_gradients_are_not_probed() -> None:
    model, data = tiny_cell(Identity())
    square = ATTACKS.get("square")(ATTACKS.get("square").Params.model_validate({"n_queries": 5}))
    out = run_attack(Pipeline(model, Identity()), square, data, Threat("linf", 0.05), JobContext(), 16)
    assert out.dead is None


def test_only_restricts_the_attacked_examples_and_the_rest_count_as_broken() -> None:
    model, data = tiny_cell(Identity())
    only = torch.arange(64) % 2 == 0
    weak = pgd({"steps": 1, "step_sizes": [1e-4], "random_start": False})
    threat = Threat("linf", 0.3)
    out = run_attack(Pipeline(model, Identity()), weak, data, threat, JobContext(), 16, only=only)
    assert out.attacked is not None and torch.equal(out.attacked, only & out.clean)
    assert not bool(out.robust[~only].any()) and bool(out.robust[only].all())


class NoProbe(PGD):
    uses_gradients = False


def test_the_probe_draws_nothing_a_randomized_attack_or_its_votes_would_have_drawn() -> None:
    """Attack and votes see the same draws with the probe as without it: it runs after all of them."""
    model, data = tiny_cell(Identity())
    outs = []
    for cls in (PGD, NoProbe):
        frontend = Noisy()
        frontend.reseed(7)
        pipe = Pipeline(model, frontend, eot_samples=2, vote_draws=5)
        attack = cls(PGDParams(steps=2))
        outs.append(run_attack(pipe, attack, data, Threat("linf", 0.1), JobContext(), 16, attack_seed=3))
    probed, plain = outs
    assert probed.dead is not None and plain.dead is None
    assert torch.equal(probed.robust, plain.robust) and torch.equal(probed.x_adv, plain.x_adv)
