"""The front-end contract: a private random stream the harness can restart."""

from __future__ import annotations

import torch

from bench.api import Identity


def test_front_end_rng_is_per_device_and_restarts_on_reseed() -> None:
    fe = Identity()
    fe.reseed(5)
    cpu = torch.device("cpu")
    first = torch.rand(3, generator=fe.rng(cpu))
    assert fe.rng(cpu) is fe.rng(cpu), "one stream per device, not a fresh one per call"
    fe.reseed(5)
    assert torch.equal(torch.rand(3, generator=fe.rng(cpu)), first)
