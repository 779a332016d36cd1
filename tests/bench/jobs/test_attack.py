"""Seeds the attack job hands out are its own: none equals the seed the executor gives the global RNG."""

from __future__ import annotations

from bench.api import AttackParams
from bench.attacks.pgd import FGSMParams, PGDParams
from bench.jobs.attack import attack_seed, judging_seed
from bench.jobs.configs import AttackJobConfig, CellJobConfig
from bench.jobs.spec import JobSpec

EVALUATION = {"protocol": 3, "n_eval": 10, "eval_seed": 0, "batch_size": 5, "eot_samples": 1, "vote_draws": 1}


def attack(kind: str, params: AttackParams) -> AttackJobConfig:
    return AttackJobConfig(
        attack=kind, revision=1, params=params, bpda=True, norm="linf", eps=0.3, **EVALUATION
    )


def test_defense_seeds_are_not_the_global_seed_of_the_job() -> None:
    a = JobSpec("a", attack("pgd", PGDParams(steps=1)), ("fe", "target"), "data")
    b = JobSpec("b", attack("fgsm", FGSMParams()), ("fe", "target"), "data")
    cell_config = CellJobConfig(norm="linf", eps=0.3, checks=True, n_checks=5, **EVALUATION)
    cell = JobSpec("c", cell_config, ("fe", "target", a.key, b.key), "data")
    global_seed = int(a.key[:12], 16)
    assert attack_seed(a) != global_seed
    assert attack_seed(a) != attack_seed(b)
    assert judging_seed(a) == judging_seed(b) == judging_seed(cell)
