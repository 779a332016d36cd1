"""Seeds the attack job hands out are its own: none equals the seed the executor gives the global RNG."""

from __future__ import annotations

from bench.jobs.attack import attack_seed, judging_seed
from bench.jobs.spec import JobSpec


def test_defense_seeds_are_not_the_global_seed_of_the_job() -> None:
    a = JobSpec("attack", "a", {"attack": "pgd", "params": {"steps": 1}}, ("fe", "target"), "data")
    b = JobSpec("attack", "b", {"attack": "fgsm", "params": {}}, ("fe", "target"), "data")
    cell = JobSpec("cell", "c", {"norm": "linf"}, ("fe", "target", a.key, b.key), "data")
    global_seed = int(a.key[:12], 16)
    assert attack_seed(a) != global_seed
    assert attack_seed(a) != attack_seed(b)
    assert judging_seed(a) == judging_seed(b) == judging_seed(cell)
