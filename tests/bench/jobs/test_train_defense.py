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
pytestmark = pytest.mark.usefixtures("one_thread")


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


class ScalerNet(FrontEnd):
    """Test-only: one weight, so where a front-end's training started from is plain to see."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Conv2d(1, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out.clamp(0, 1)


class Scaler(Trainable):
    """Test-only: records the weight its training starts from, then moves it by one."""

    started: ClassVar[list[float]] = []

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return ScalerNet()

    def fit(self, frontend: FrontEnd, guides: Any, *args: Any) -> dict[str, float]:
        weight = frontend.get_parameter("net.weight")
        Scaler.started.append(float(weight.detach()))
        with torch.no_grad():
            weight.add_(1.0)
        return {}


TEST_DEFENSES["test-scaler"] = Scaler


class ArtifactUpstream(GuideUpstream):
    """Test-only: front-end artifacts held in memory, by job key."""

    def __init__(self, graph: JobGraph, env: Env, guide: nn.Module, frontends: dict[str, Any]) -> None:
        super().__init__(graph, env, guide)
        self.frontends = frontends

    def tensors(self, key: str, name: str) -> dict[str, torch.Tensor]:
        assert name == "frontend"
        return dict(self.frontends[key])

    def classifier(self, key: str) -> Any:
        assert self.graph[key].kind == "train-classifier", f"{self.graph[key].label} is no classifier"
        return self.guide


def scaler_config(**fields: Any) -> FrontEndJobConfig:
    params = Scaler.Params()
    return FrontEndJobConfig(
        kind="test-scaler", params=params, input_shape=SHAPE, seed=0, dataset="toy", n_train=16, **fields
    )


def test_a_front_end_trained_from_another_starts_from_its_artifact(tmp_path: Path) -> None:
    graph = JobGraph()
    guide = graph.add(JobSpec("classifier G", Guide(name="G")))
    init = graph.add(JobSpec("front-end base", scaler_config(), (guide.key,)))
    tuned = graph.add(JobSpec("front-end tuned", scaler_config(n_val=1), (init.key, guide.key)))
    env = ToyEnv(tmp_path, False, ArtifactStore(tmp_path), JobContext())
    start = {"net.weight": torch.full((1, 1, 1, 1), 0.25)}
    upstream = ArtifactUpstream(graph, env, bn_guide(), {init.key: start})
    Scaler.started.clear()
    out = train_defense.run(tuned, upstream, env)
    assert Scaler.started == [0.25], "fit got the init front-end's weights"
    assert float(out.tensors["frontend"]["net.weight"]) == 1.25
    card = out.json["card"]
    assert card["guides"] == [guide.key] and card["init_from"] == init.key, "the init job is no guide"
    assert Upstream.guide(upstream, tuned.key) is upstream.guide, "a transfer attack's guide is a classifier"


def test_a_front_end_loaded_from_weights_is_not_trained_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from bench.api import sha256_file
    from bench.errors import WeightsError

    path = tmp_path / "scaler.safetensors"
    save_file({"net.weight": torch.full((1, 1, 1, 1), 0.5)}, path)
    digest = sha256_file(path)
    config = FrontEndJobConfig(
        kind="test-scaler", params=Scaler.Params(), input_shape=SHAPE, seed=0, weights_sha256=digest
    )
    graph = JobGraph()
    spec = graph.add(JobSpec("front-end from scaler.safetensors", config, locations={"weights": str(path)}))
    env = ToyEnv(tmp_path, False, ArtifactStore(tmp_path), JobContext())
    Scaler.started.clear()
    out = train_defense.run(spec, Upstream(graph, env, lambda key: {}), env)
    assert Scaler.started == [], "nothing is trained"
    assert float(out.tensors["frontend"]["net.weight"]) == 0.5
    assert out.json["card"]["weights_sha256"] == config.weights_sha256
    save_file({"net.weight": torch.full((1, 1, 1, 1), 0.75)}, path)
    with pytest.raises(WeightsError, match="changed since the run was planned"):
        train_defense.run(spec, Upstream(graph, env, lambda key: {}), env)


class SalmanDnCNN(nn.Module):
    """microsoft/denoised-smoothing's ``code/archs/dncnn.py`` DnCNN, layer for layer: the layout of the state
    dict their ``train_denoiser.py`` saves."""

    def __init__(self, depth: int = 17, n_channels: int = 64, image_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(image_channels, n_channels, 3, padding=1, bias=True), nn.ReLU()]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(n_channels, n_channels, 3, padding=1, bias=False))
            layers.append(nn.BatchNorm2d(n_channels, eps=0.0001, momentum=0.95))
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(n_channels, image_channels, 3, padding=1, bias=False))
        self.dncnn = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x - self.dncnn(x)
        return out


def salman_checkpoint(path: Path, data_parallel: bool, depth: int, width: int) -> SalmanDnCNN:
    """Their ``checkpoint.pth.tar``: epoch, arch, the denoiser's state dict and Adam's, with random weights
    and statistics (their ImageNet denoisers are saved through DataParallel, hence ``module.``)."""
    torch.manual_seed(0)
    theirs = SalmanDnCNN(depth, width)
    with torch.no_grad():
        for t in theirs.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.1)
    optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-3, weight_decay=1e-4)
    theirs(torch.rand(2, 3, 32, 32)).square().mean().backward()
    optimizer.step()
    theirs.eval()
    saved: nn.Module = nn.DataParallel(theirs) if data_parallel else theirs
    checkpoint = {"epoch": 90, "arch": "cifar_dncnn", "state_dict": saved.state_dict()}
    torch.save({**checkpoint, "optimizer": optimizer.state_dict()}, path)
    return theirs


@pytest.mark.parametrize(
    "data_parallel, depth, width",
    [(False, 17, 64), (True, 5, 8)],  # their CIFAR-10 DnCNN; a small one saved as their ImageNet ones are
)
def test_salman_et_als_published_dncnn_checkpoint_loads_without_training(
    tmp_path: Path, data_parallel: bool, depth: int, width: int
) -> None:
    from bench.api import sha256_file

    path = tmp_path / "checkpoint.pth.tar"
    theirs = salman_checkpoint(path, data_parallel, depth, width)
    sizes = {"depth": depth, "width": width}
    params = DEFENSES.get("denoised-smoothing").Params.model_validate({"sigma": 0.25, **sizes})
    digest = sha256_file(path)
    config = FrontEndJobConfig(
        kind="denoised-smoothing", params=params, input_shape=(3, 32, 32), seed=0, weights_sha256=digest
    )
    graph = JobGraph()
    spec = graph.add(JobSpec("front-end from checkpoint.pth.tar", config, locations={"weights": str(path)}))
    env = ToyEnv(tmp_path, False, ArtifactStore(tmp_path), JobContext())
    out = train_defense.run(spec, Upstream(graph, env, lambda key: {}), env)
    upstream = Upstream(graph, env, lambda key: {})
    upstream.tensors = lambda key, name: out.tensors[name]  # type: ignore[method-assign]
    ours = upstream.frontend(spec.key)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5), "their denoiser, computing what theirs computes"
