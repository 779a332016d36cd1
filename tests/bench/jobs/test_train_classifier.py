"""The train-classifier job with ``init_weights``: training starts from the file (fine-tuning), keyed by the
file's content, its normalization read from it like a weights-loaded classifier's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from bench.api import build_classifier, sha256_file
from bench.artifacts import ArtifactStore
from bench.config import parse_matrix
from bench.errors import ConfigError
from bench.executor import LocalExecutor
from bench.jobs.env import Env
from bench.plan import plan_matrix
from bench.storage import Store
from bench.validate import validate_matrix


def matrix(**classifier: Any) -> dict[str, Any]:
    return {
        "name": "finetune",
        "classifiers": {"F": {"arch": "mnist-c", "dataset": "mnist", **classifier}},
        "defenses": {"none": {"kind": "none"}},
        "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
        "attacks": {"fgsm": {"kind": "fgsm"}},
        "evaluation": {"n_eval": 16, "batch_size": 16, "checks": False},
        "experiments": [{"kind": "native", "defenses": ["none"], "guides": ["F"]}],
    }


@pytest.fixture()
def start(tmp_path: Path) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """A seeded mnist-c saved twice: with its normalization recorded (the model with its wrapper), and as
    the bare network, which records none."""
    torch.manual_seed(3)
    model = build_classifier("mnist-c", 10, (0.1307,), (0.3081,))
    recorded, plain = tmp_path / "recorded.safetensors", tmp_path / "plain.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, recorded)
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, plain)
    return recorded, plain, state


def test_training_starts_from_the_file(tmp_path: Path, data_dir: Path, start: Any) -> None:
    """At a learning rate too small to move anything, the fine-tuned model is the file's; the same training
    from a random initialization is another model, under another key."""
    recorded, _, state = start
    train = {"epochs": 1, "n_train": 64, "lr": 1e-12}
    env = Env(data_dir, False, ArtifactStore(tmp_path / "art"))
    store = Store(tmp_path / "r.db")
    keys = []
    for raw in (matrix(init_weights=str(recorded), train=train), matrix(train=train)):
        planned = plan_matrix(parse_matrix(raw, "m.yaml"), tmp_path, env)
        run_id = store.start_run(
            matrix_name="finetune", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix=raw, git_commit=None,
            versions={}, device="cpu",
        )
        summary = LocalExecutor(show_progress=False).run(planned.graph, store, env, run_id, force=False)
        assert not summary.failed and not summary.blocked
        (job,) = [s for s in planned.graph if s.kind == "train-classifier"]
        (model,) = [env.artifacts.read_tensors(a) for a in store.completed_artifacts(job.key) or []
                    if a.name == "model"]
        keys.append(job.key)
        moved = max(float((model[k].float() - state[k].float()).abs().max()) for k in state)
        if "init_weights" in raw["classifiers"]["F"]:
            assert job.config["init_sha256"] == sha256_file(recorded)
            assert job.locations == {"init_weights": str(recorded)}
            assert moved < 1e-6
            (record,) = store.jobs([job.key])
            assert record.metrics["normalization_from"] == "weights file"
        else:
            assert "init_sha256" not in job.config and moved > 1e-2
    assert keys[0] != keys[1]


def test_the_normalization_comes_from_the_file_or_the_matrix(
    tmp_path: Path, data_dir: Path, start: Any
) -> None:
    recorded, plain, _ = start
    env = Env(data_dir, False, ArtifactStore(tmp_path / "art"))

    def job(**classifier: Any) -> Any:
        planned = plan_matrix(parse_matrix(matrix(**classifier), "m.yaml"), tmp_path, env)
        return next(s for s in planned.graph if s.kind == "train-classifier")

    assert job(init_weights=str(recorded)).config["normalization"] == {"mean": [0.1307], "std": [0.3081]}
    stated = job(init_weights=str(plain), normalization="none")
    assert stated.config["normalization"] == {"mean": [0.0], "std": [1.0]}
    with pytest.raises(ConfigError, match="classifier 'F' is loaded from weights that do not record"):
        job(init_weights=str(plain))
    with pytest.raises(ConfigError, match=r"classifiers\.F\.normalization"):
        validate(matrix(init_weights=str(plain)), tmp_path, data_dir)


@pytest.mark.parametrize("extra", [{"weights": "w.safetensors"}, {"source": "torchvision:resnet18"}])
def test_init_weights_with_a_finished_model_is_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="init_weights starts training from a file"):
        parse_matrix(matrix(init_weights="i.safetensors", **extra), "m.yaml")


def test_a_missing_file_is_named(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"classifiers\.F\.init_weights.*does not exist"):
        validate(matrix(init_weights="nowhere.safetensors"), tmp_path, data_dir)


def validate(raw: dict[str, Any], base_dir: Path, data_dir: Path) -> None:
    validate_matrix(parse_matrix(raw, "m.yaml"), "m.yaml", base_dir, data_dir)
