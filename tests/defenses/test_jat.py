"""JAT: Madry's settings as defaults, the joint loss averaged over classifiers, the front-end AND the new
classifiers trained by one fit, the attack leaving no trace in BatchNorm statistics, a killed fit resuming
bit for bit, and a real MNIST run through the job graph whose native cells judge the jointly trained
classifier."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bench.api import DEFENSES, Checkpoints, ConfigError, DatasetInfo, ImageData, JobContext
from bench.artifacts import ArtifactStore
from bench.config import parse_matrix
from bench.executor import LocalExecutor
from bench.jobs.configs import JointClassifier
from bench.jobs.env import Env
from bench.jobs.upstream import joint_artifact, new_joint_classifier
from bench.plan import plan_matrix
from bench.storage import Store
from defenses.jat import JAT, JATParams, joint_loss, running_statistics_kept
from defenses.unet import BoundedUNet
from tests.interrupt import CountingContext, Killed, Steps

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)
#: A tiny U-Net, two PGD steps, 96 images in batches of 32: three steps an epoch.
TINY: dict[str, Any] = {"scale": 1, "depth": 2, "epochs": 2, "batch_size": 32, "attack_steps": 2, "lr": 0.05}


def classifier(seed: int = 0) -> nn.Module:
    """A new, trainable classifier with BatchNorm (whose running statistics only training steps may move)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def images(n: int, seed: int) -> ImageData:
    x = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
    labels = (x.flatten(1).mean(1) * 3 * 2 - 2.5).clamp(0, 2).long()  # a learnable rule: brightness
    info = DatasetInfo("tiny", 3, SHAPE, (0.5,), (0.5,), n, 0)
    return ImageData((x * 255).round().to(torch.uint8), labels, f"tiny{seed}", info)


def fit(
    ctx: JobContext, classifiers: list[nn.Module], val: ImageData | None = None, **overrides: Any
) -> tuple[BoundedUNet, dict[str, float]]:
    defense = JAT()
    params = JATParams.model_validate({**TINY, **overrides})
    torch.manual_seed(1)
    frontend = defense.build(params, SHAPE)
    assert isinstance(frontend, BoundedUNet)
    metrics = defense.fit(frontend, classifiers, images(96, 1), val, params, ctx)
    return frontend, metrics


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_defaults_are_madrys_adversarial_training_and_it_trains_its_classifier() -> None:
    p = JATParams()
    assert (p.norm, p.eps, p.attack_steps, p.attack_step) == ("linf", 8 / 255, 7, 2 / 255)
    assert (p.lr, p.momentum, p.weight_decay, p.batch_size, p.epochs) == (0.1, 0.9, 2e-4, 128, 205)
    assert (p.lr_milestones, p.lr_decay) == ([0.5, 0.75], 0.1)
    assert DEFENSES.get("jat") is JAT
    assert JAT.trains_classifier and JAT.trainable and JAT.needs_data
    assert JAT().epochs_at_full_scale(p) == 205
    assert isinstance(JAT().build(JATParams(scale=1), (3, 32, 32)), BoundedUNet), "RTFE's U-Net variant"


def test_the_joint_loss_is_averaged_over_classifiers() -> None:
    classifiers = [classifier(0).eval(), classifier(1).eval()]
    frontend = JAT().build(JATParams.model_validate(TINY), SHAPE).eval()
    x, y = torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        together, hits = joint_loss(frontend, classifiers, x, y)
        alone = [joint_loss(frontend, [c], x, y) for c in classifiers]
    assert float(together) == pytest.approx((float(alone[0][0]) + float(alone[1][0])) / 2, rel=1e-6)
    assert float(hits) == pytest.approx((float(alone[0][1]) + float(alone[1][1])) / 2)


def test_the_attacks_forward_passes_leave_running_statistics_as_they_were() -> None:
    net = classifier().train()
    before = state(net)
    with running_statistics_kept([net]):
        net(torch.rand(8, *SHAPE))
    after = state(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    net(torch.rand(8, *SHAPE))
    assert not torch.equal(state(net)["2.running_mean"], before["2.running_mean"]), "a real step moves them"


def test_one_fit_trains_the_front_end_and_every_classifier_and_leaves_them_in_eval_mode() -> None:
    classifiers = [classifier(0), classifier(1)]
    torch.manual_seed(1)
    untrained = state(JAT().build(JATParams.model_validate(TINY), SHAPE))
    before = [state(c) for c in classifiers]
    frontend, metrics = fit(JobContext(seed=0), classifiers, val=images(20, 5), epochs=1)
    assert any(not torch.equal(v, untrained[k]) for k, v in frontend.state_dict().items())
    for c, b in zip(classifiers, before, strict=True):
        now = c.state_dict()
        assert not torch.equal(now["1.weight"], b["1.weight"]), "the first layer was not trained"
        assert not torch.equal(now["4.weight"], b["4.weight"]), "the last layer was not trained"
        assert not c.training
    assert not frontend.training
    assert metrics["final_epoch_ce"] > 0 and 0 <= metrics["final_epoch_train_adv_accuracy"] <= 1
    assert {"val_clean_accuracy", "val_adv_accuracy"} <= set(metrics)


def test_the_warm_up_trains_the_front_end_alone_before_the_joint_epochs() -> None:
    """Killed after the last step of the warm-up epoch (three steps), the classifiers are as they started and
    the front-end is not."""
    classifiers = [classifier(0)]
    before = state(classifiers[0])
    torch.manual_seed(1)
    untrained = state(JAT().build(JATParams.model_validate(TINY), SHAPE))
    ctx = CountingContext(seed=0, bar=Steps(2))
    params = JATParams.model_validate({**TINY, "warmup_epochs": 1, "epochs": 1})
    torch.manual_seed(1)
    frontend = JAT().build(params, SHAPE)
    with pytest.raises(Killed):
        JAT().fit(frontend, classifiers, images(96, 1), None, params, ctx)
    assert all(torch.equal(v, before[k]) for k, v in classifiers[0].state_dict().items())
    assert any(not torch.equal(v, untrained[k]) for k, v in frontend.state_dict().items())


def test_a_few_epochs_lower_the_adversarial_loss() -> None:
    _, first = fit(JobContext(seed=0), [classifier()], epochs=1)
    _, later = fit(JobContext(seed=0), [classifier()], epochs=8)
    assert later["final_epoch_ce"] < first["final_epoch_ce"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="28 -> 14 -> 7 -> 3 -> 1"):
        JAT().check(JATParams(), (1, 28, 28), [])
    wide = nn.Sequential(nn.Flatten(), nn.Linear(128, 3))
    with pytest.raises(ConfigError, match="guide 2 of 2 cannot take"):
        JAT().check(JATParams.model_validate(TINY), SHAPE, [classifier().eval(), wide])
    five = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with pytest.raises(ConfigError, match=r"different numbers of classes \(3, 5\)"):
        JAT().check(JATParams.model_validate(TINY), SHAPE, [classifier().eval(), five])


def test_a_fit_killed_part_way_resumes_to_the_uninterrupted_weights_of_both_networks(tmp_path: Path) -> None:
    """Killed on the second step of the second epoch, with a learning-rate decay inside the run, so the
    scheduler's and the classifiers' states are resumed too."""
    settings: dict[str, Any] = {"epochs": 3, "lr_milestones": [0.5]}
    want_classifiers = [classifier(0), classifier(1)]
    expected, expected_metrics = fit(JobContext(seed=2), want_classifiers, **settings)
    with pytest.raises(Killed):
        killed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path), bar=Steps(4))
        fit(killed, [classifier(0), classifier(1)], **settings)
    torch.manual_seed(999)
    resumed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path))
    got_classifiers = [classifier(0), classifier(1)]
    weights, metrics = fit(resumed, got_classifiers, **settings)
    assert resumed.bar.skipped == 3 and resumed.bar.run == 6
    for got, want in [(weights, expected), *zip(got_classifiers, want_classifiers, strict=True)]:
        now, then = got.state_dict(), want.state_dict()
        assert all(torch.equal(now[k], then[k]) for k in then), "resumed weights differ"
    assert {k: v for k, v in metrics.items() if "wall" not in k} == {
        k: v for k, v in expected_metrics.items() if "wall" not in k
    }


@pytest.mark.e2e
def test_a_tiny_mnist_run_trains_both_and_judges_the_front_end_natively_with_its_own_classifier(
    tmp_path: Path, data_dir: Path
) -> None:
    raw = {
        "name": "jat-tiny",
        "classifiers": {
            "J": {"arch": "mnist-c", "dataset": "mnist"},
            "T": {"arch": "mnist-c", "dataset": "mnist", "seed": 1, "train": {"epochs": 1, "n_train": 256}},
        },
        "defenses": {
            "jat": {
                "kind": "jat",
                "n_train": 64,
                "params": {"scale": 1, "depth": 2, "epochs": 1, "batch_size": 32, "attack_steps": 2},
            }
        },
        "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
        # The transfer attack crafts on the front-end with its guide: the classifier trained with it.
        "attacks": {
            "fgsm": {"kind": "fgsm"},
            "transfer": {"kind": "transfer-pgd", "params": {"surrogate": "guide", "steps": 2}},
        },
        "evaluation": {"n_eval": 16, "batch_size": 16, "checks": False},
        "experiments": [
            {"kind": "native", "defenses": ["jat"], "guides": ["J"]},
            {"kind": "cross-model", "defenses": ["jat"], "guides": ["J"], "targets": ["T"]},
        ],
    }
    env = Env(data_dir, False, ArtifactStore(tmp_path / "art"), JobContext())
    planned = plan_matrix(parse_matrix(raw, "m.yaml"), tmp_path, env)
    store = Store(tmp_path / "r.db")
    run_id = store.start_run(
        matrix_name="jat-tiny",
        matrix_path="m.yaml",
        matrix_sha256="0" * 64,
        matrix=raw,
        git_commit=None,
        versions={},
        device="cpu",
    )
    start = time.perf_counter()
    summary = LocalExecutor(show_progress=False).run(planned.graph, store, env, run_id, force=False)
    assert time.perf_counter() - start < 30
    assert not summary.failed and not summary.blocked and len(summary.ran) == len(planned.graph)

    def artifacts(key: str) -> dict[str, dict[str, torch.Tensor]]:
        found = store.completed_artifacts(key) or []
        return {a.name: env.artifacts.read_tensors(a) for a in found if a.name != "card"}

    (fe,) = [s for s in planned.graph if s.kind == "train-defense"]
    (joint,) = [s for s in planned.graph if s.config.get("origin") == "joint"]
    assert fe.deps == () and joint.deps == (fe.key,)
    saved = artifacts(fe.key)
    assert set(saved) == {"frontend", joint_artifact(0)}
    config = joint.settings_as(JointClassifier)
    initial = new_joint_classifier(config).state_dict()
    trained = saved[joint_artifact(0)]
    assert any(not torch.equal(trained[k], initial[k]) for k in initial), "the classifier was not trained"
    kept = artifacts(joint.key)["model"]
    assert all(torch.equal(kept[k], trained[k]) for k in trained), "the joint job keeps the front-end job's"
    cells = {planned.graph.evaluation_use(s.key).relation: s for s in planned.graph if s.kind == "cell"}
    assert cells["native"].deps[:2] == (fe.key, joint.key)
    independent = next(s.key for s in planned.graph if s.config.get("origin") == "train")
    assert cells["cross-model"].deps[:2] == (fe.key, independent)
    (record,) = [j for j in store.jobs([joint.key])]
    assert 0 <= record.metrics["test_accuracy"] <= 1
