"""``--job-resources KIND:NAME=VALUE,...``: what each job kind reserves on a Ray cluster; clean refusals."""

from __future__ import annotations

import pytest

from bench.errors import BenchError
from bench.jobs.resources import GIB, RESOURCES, Resources, with_overrides


def test_overrides_change_only_the_named_kind_and_resources() -> None:
    out = with_overrides(["cell:num_gpus=0.25, memory=512MiB", "attack:num_cpus=2"])
    assert out["cell"] == Resources(num_cpus=1, num_gpus=0.25, memory=512 << 20)
    assert out["attack"].num_cpus == 2 and out["attack"].threads == 2
    assert out["attack"].memory == RESOURCES["attack"].memory
    assert out["train-defense"] == RESOURCES["train-defense"]


def test_a_later_override_of_the_same_resource_wins() -> None:
    out = with_overrides(["cell:num_gpus=0.5", "cell:num_gpus=0,memory=2GiB"])
    assert (out["cell"].num_gpus, out["cell"].memory) == (0, 2 * GIB)


def test_ray_options_ask_for_a_gpu_only_on_a_gpu_run() -> None:
    cell = with_overrides(["cell:num_gpus=0.25"])["cell"]
    assert cell.ray_options(gpu=True) == {"num_cpus": 1, "num_gpus": 0.25, "memory": GIB}
    assert cell.ray_options(gpu=False)["num_gpus"] == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trainer:num_cpus=2", "KIND one of train-classifier, train-defense, attack"),
        ("num_cpus=2", "expected KIND:NAME=VALUE"),
        ("cell:num_tpus=1", "num_tpus: Extra inputs are not permitted (names: num_cpus, num_gpus, memory)"),
        ("cell:num_cpus=lots", "num_cpus: Input should be a valid number"),
        ("cell:num_cpus=0", "num_cpus: Input should be greater than 0"),
        ("cell:num_gpus=-1", "num_gpus: Input should be greater than or equal to 0"),
        ("cell:memory=2 potatoes", "memory: could not interpret byte unit: potatoes"),
        ("cell:num_cpus", "'num_cpus' is not NAME=VALUE"),
        ("cell:=3", "'=3' is not NAME=VALUE"),
    ],
)
def test_a_bad_override_is_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(BenchError, match="--job-resources") as caught:
        with_overrides([text])
    assert message in str(caught.value)
