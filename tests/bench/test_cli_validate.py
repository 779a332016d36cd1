"""``bench validate`` makes every check ``bench run`` makes before its first job, and runs nothing."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from safetensors.torch import save_file

from bench.api import build_classifier
from bench.cli import main
from tests.bench.test_config import BASE


def validate(tmp_path: Path, raw: dict[str, object], data_dir: Path) -> tuple[int, str]:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["validate", "--matrix", str(path), "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def test_weights_that_do_not_fit_are_found_by_validate(tmp_path: Path, data_dir: Path) -> None:
    head100 = build_classifier("mnist-c", 100, (0.1307,), (0.3081,)).net.state_dict()
    weights = tmp_path / "c100.safetensors"
    save_file({k: v.contiguous() for k, v in head100.items()}, weights)
    raw = {**BASE, "classifiers": {**BASE["classifiers"], "C": {"arch": "mnist-c", "dataset": "mnist",
                                                               "weights": str(weights),
                                                               "normalization": "dataset"}}}
    code, output = validate(tmp_path, raw, data_dir)
    assert code != 0 and "c100.safetensors" in output and "shape mismatch" in output


def test_a_missing_dataset_is_found_by_validate(tmp_path: Path) -> None:
    code, output = validate(tmp_path, BASE, tmp_path / "empty")
    assert code != 0 and "mnist" in output


def test_validate_reports_the_jobs_it_would_run(tmp_path: Path, data_dir: Path) -> None:
    existed = Path("artifacts").exists()
    code, output = validate(tmp_path, BASE, data_dir)
    assert code == 0 and "ok (2 experiments" in output and "jobs)" in output
    assert Path("artifacts").exists() == existed, "validate must not write artifacts"
