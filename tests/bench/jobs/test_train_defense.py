"""The front-end job holds defenses to the contract: ``build`` returns a FrontEnd, ``fit`` gets validation
images disjoint from its training images and leaves its guides exactly as it found them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from bench.api import DEFENSES, DatasetInfo, Defense, DefenseParams, FrontEnd, Identity, ImageData, JobContext
from bench.artifacts import ArtifactStore
from bench.errors import EvaluationError
from bench.jobs import train_defense
from bench.jobs.configs import FrontEndJobConfig, JobConfig, JobKind
from bench.jobs.env import Env
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import Upstream

SHAPE = (1, 8, 8)


class Guide(JobConfig):
    """Test-only: a guide classifier the graph knows by name; :class:`GuideUpstream` supplies the model."""

    job_kind: ClassVar[JobKind] = "train-classifier"
    name: str


def toy_images(n: int) -> ImageData:
    images = torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return ImageData(images, torch.arange(n) % 3, "toy", DatasetInfo("toy", 3, SHAPE, (0.5,), (0.5,), n, 0))


@dataclass
class ToyEnv(Env):
    def dataset(self, name: str, split: str) -> ImageData:
        return toy_images(40)


class GuideUpstream(Upstream):
    def __init__(self, graph: JobGraph, env: Env, guide: nn.Module) -> None:
        super().__init__(graph, env, lambda key: {})
        self.guide = guide

    def classifier(self, key: str) -> Any:
        return self.guide


def bn_guide() -> nn.Module:
    """Weights and BatchNorm statistics: a front-end's training may change neither."""
    torch.manual_seed(0)
    return nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(64, 3)).eval().requires_grad_(False)


def run(tmp: Path, kind: str, guide: nn.Module, n_val: int | None = None) -> dict[str, float]:
    graph = JobGraph()
    dep = graph.add(JobSpec("classifier G", Guide(name="G")))
    params = DEFENSES.get(kind).Params()
    config = FrontEndJobConfig(
        kind=kind, params=params, input_shape=SHAPE, seed=0, dataset="toy", n_train=16, n_val=n_val
    )
    spec = graph.add(JobSpec(f"front-end {kind}", config, (dep.key,)))
    env = ToyEnv(tmp, False, ArtifactStore(tmp), JobContext())
    return train_defense.run(spec, GuideUpstream(graph, env, guide), env).metrics


class Plain(Defense):
    """Test-only: builds a plain module, which has none of a front-end's private random stream."""

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        plain: Any = nn.Identity()
        return plain  # type: ignore[no-any-return]


class Trainable(Defense):
    trainable = True
    needs_data = True
    seen: ClassVar[dict[str, ImageData | None]] = {}

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return Identity()


class Recorder(Trainable):
    """Test-only: keeps what ``fit`` was given."""

    def fit(
        self,
        frontend: FrontEnd,
        guides: Any,
        train: ImageData,
        val: ImageData | None,
        params: DefenseParams,
        ctx: JobContext,
    ) -> dict[str, float]:
        Recorder.seen.update(train=train, val=val)
        return {}


class WeightEditor(Trainable):
    """Test-only: trains its guide, which no front-end may do."""

    def fit(self, frontend: FrontEnd, guides: Any, *args: Any) -> dict[str, float]:
        with torch.no_grad():
            guides[0][2].weight.add_(1.0)
        return {}


class StatisticsEditor(Trainable):
    """Test-only: runs its guide in training mode, which moves its BatchNorm statistics."""

    def fit(self, frontend: FrontEnd, guides: Any, train: ImageData, *args: Any) -> dict[str, float]:
        guides[0].train()
        guides[0](train.float_images())
        return {}


TEST_DEFENSES: dict[str, type[Defense]] = {
    "test-plain-module": Plain,
    "test-recorder": Recorder,
    "test-weight-editor": WeightEditor,
    "test-statistics-editor": StatisticsEditor,
}


@pytest.fixture(autouse=True)
def test_defenses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by name during these tests only: tests parametrized over the registry never meet them."""
    registered = DEFENSES.get
    monkeypatch.setattr(DEFENSES, "get", lambda name: TEST_DEFENSES.get(name) or registered(name))


def test_a_defense_building_a_plain_module_is_told_to_subclass_front_end(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError) as err:
        run(tmp_path, "test-plain-module", bn_guide())
    assert "defense 'test-plain-module': build() returned a Identity, not a front-end" in str(err.value)
    assert "subclass of bench.api.FrontEnd" in str(err.value)


@pytest.mark.parametrize(
    "kind, changed",
    [
        ("test-weight-editor", "[2.weight]"),
        ("test-statistics-editor", "[0.running_mean, 0.running_var, 0.num_batches_tracked]"),
    ],
)
def test_a_fit_that_changes_its_guide_fails_and_the_guide_is_put_back(
    tmp_path: Path, kind: str, changed: str
) -> None:
    guide = bn_guide()
    before = {k: v.clone() for k, v in guide.state_dict().items()}
    with pytest.raises(EvaluationError) as err:
        run(tmp_path, kind, guide)
    assert f"defense {kind!r} changed its guide classifier G {changed} while training" in str(err.value)
    now = guide.state_dict()
    assert all(torch.equal(now[k], v) for k, v in before.items()), "the shared guide is restored"
    assert not guide.training and not any(p.requires_grad for p in guide.parameters()), "and frozen again"


def test_a_fit_that_leaves_its_guide_alone_passes(tmp_path: Path) -> None:
    assert run(tmp_path, "test-recorder", bn_guide()) == {}


def test_fit_gets_validation_images_disjoint_from_its_training_images(tmp_path: Path) -> None:
    run(tmp_path, "test-recorder", bn_guide(), n_val=8)
    train, val = Recorder.seen["train"], Recorder.seen["val"]
    assert train is not None and val is not None and (len(train), len(val)) == (16, 8)
    rows = {bytes(x.numpy()) for x in train.images}
    assert not any(bytes(x.numpy()) in rows for x in val.images), "validation images are held out"

    run(tmp_path, "test-recorder", bn_guide())
    assert Recorder.seen["val"] is None
