"""``run_attack``: clean answers of a randomized pipeline do not depend on which attack follows."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import ATTACKS, DatasetInfo, FrontEnd, ImageData, JobContext, Pipeline, Threat
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
