"""Certify jobs: planned per (front-end, target, σ) with the settings they are keyed by, and run end to end
through ``bench run`` into a store of certificates and per-radius rows."""

from __future__ import annotations

import copy
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import bench.jobs.certify
from bench.api import Checkpoints, GaussianSmoothing, JobContext
from bench.artifacts import ArtifactStore
from bench.certify import (
    ABSTAIN,
    Certificate,
    CertifyParams,
    GaussianNoise,
    SmoothedClassifier,
    certified_accuracy,
)
from bench.config import parse_matrix
from bench.data.splits import eval_subset
from bench.jobs.certify import CERTIFY_VERSION, certify_all, select_images
from bench.jobs.configs import CertifyImages
from bench.jobs.env import Env
from bench.plan import Planned, plan_matrix
from bench.uses import EvaluationUse
from tests.e2e.tiny import bench_run

pytestmark = pytest.mark.usefixtures("one_thread")

#: MNIST's normalization std, which a classifier trained with the dataset's statistics divides by.
MNIST_STD = 0.3081

MATRIX: dict[str, Any] = {
    "name": "certify",
    "classifiers": {"C": {"arch": "mnist-c", "dataset": "mnist", "train": {"epochs": 1, "n_train": 500}}},
    "defenses": {"smooth": {"kind": "smoothing", "params": {"sigma": 0.25}}, "none": {"kind": "none"}},
    "threats": {"l2": {"norm": "l2", "epsilons": [0.5]}},
    "attacks": {"fgm": {"kind": "fgsm"}},
    "evaluation": {"n_eval": 16, "checks": False},
    "certify": {"n0": 10, "n": 200, "noise_batch": 64, "n_images": 8, "radii": [0.0, 0.25, 0.5]},
    "experiments": [{"kind": "native", "defenses": ["smooth", "none"], "guides": ["C"]}],
}


def matrix(**certify: Any) -> dict[str, Any]:
    raw = copy.deepcopy(MATRIX)
    raw["certify"] = certify
    return raw


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Env:
    return Env(data_dir, False, ArtifactStore(tmp_path_factory.mktemp("art")))


def plan(raw: dict[str, Any], env: Env) -> Planned:
    return plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)


def certify_jobs(planned: Planned) -> list[tuple[Any, EvaluationUse]]:
    return [(s, planned.graph.evaluation_use(s.key)) for s in planned.graph if s.kind == "certify"]


def test_one_certify_job_per_sigma_keyed_by_what_it_computes(env: Env) -> None:
    planned = plan(matrix(sigmas=[0.5, 0.25], n0=10, n=200, n_images=8, seed=3), env)
    jobs = certify_jobs(planned)
    assert [use.sigma for _, use in jobs] == [0.5, 0.25]
    classifier = next(s for s in planned.graph if s.kind == "train-classifier")
    test = env.dataset("mnist", "test")
    for spec, use in jobs:
        assert spec.config == {
            "version": CERTIFY_VERSION,
            "sigma": use.sigma,
            "noise_space": "pixel",
            "n0": 10,
            "n": 200,
            "alpha": 0.001,
            "noise_batch": 1000,
            "seed": 3,
            "images": {"seed": 0, "count": 8},
            "radii": [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0],
        }
        frontend = planned.graph[spec.deps[0]]
        assert spec.deps == (frontend.key, classifier.key)
        assert frontend.config["params"] == {"sigma": use.sigma, "space": "pixel"}
        where = (use.attack, use.threat, use.norm, use.eps, use.defense)
        assert where == ("certify", "certify", "l2", 0.0, "smooth")
        assert spec.data == eval_subset(test, 8, 0).identity
        assert spec.key in planned.evaluations
    # Every job of the smoothing defense is planned once per σ, and says which.
    cells = [planned.graph.evaluation_use(s.key) for s in planned.graph if s.kind == "cell"]
    sigmas = sorted((u.defense, u.sigma or 0) for u in cells)
    assert sigmas == [("none", 0), ("smooth", 0.25), ("smooth", 0.5)]


def test_a_certify_block_leaves_every_other_job_key_as_it_was(env: Env) -> None:
    without = copy.deepcopy(MATRIX)
    del without["certify"]
    before = {s.key for s in plan(without, env).graph}
    with_block = plan(MATRIX, env)
    assert {s.key for s in with_block.graph if s.kind != "certify"} == before
    (spec, use), = certify_jobs(with_block)
    assert use.sigma == 0.25 and spec.config["sigma"] == 0.25  # the defense's own σ


def test_a_front_end_normalizing_with_its_own_std_is_certified_with_that_std(env: Env) -> None:
    """irs divides by its own std, not the classifier's (MNIST's 0.3081): the certify job records it, and
    only such a job's config has the field, so every other key stays as it was."""
    raw = copy.deepcopy(MATRIX)
    params = {"sigma": 0.5, "mean": [0.5], "std": [0.25], "scale": 1, "depth": 2, "epochs": 1}
    raw["defenses"]["irs"] = {"kind": "irs", "params": params}
    raw["experiments"][0]["defenses"].append("irs")
    jobs = {use.defense: spec for spec, use in certify_jobs(plan(raw, env))}
    assert jobs["irs"].config["noise_space"] == "normalized" and jobs["irs"].config["noise_std"] == [0.25]
    assert "noise_std" not in jobs["smooth"].config


def test_by_default_the_attack_jobs_images_are_certified(env: Env) -> None:
    planned = plan(matrix(n0=10, n=200), env)
    (spec, _), = certify_jobs(planned)
    attack = next(s for s in planned.graph if s.kind == "attack")
    assert spec.data == attack.data
    assert spec.config["images"] == {"seed": 0, "count": 16}


def test_a_preset_supplies_parameters_and_images_and_is_stated(env: Env) -> None:
    planned = plan(matrix(preset="salman", noise_batch=500), env)
    (spec, use), = certify_jobs(planned)
    c = spec.config
    assert (c["n0"], c["n"], c["alpha"], c["noise_batch"]) == (100, 10_000, 0.001, 500)
    assert c["images"] == {"every": 20, "count": 500}
    assert use.certify_preset == "salman"
    notes = " ".join(spec.scale_notes)
    assert "certified 500 of 10000 mnist test images (every 20th from the first)" in notes
    assert "n=10,000 noise draws per image, as preset salman (Cohen et al. use 100,000)" in notes
    assert not [n for n in spec.scale_notes if ";" in n], "the report splits notes at semicolons"


def test_full_scale_certification_of_the_whole_split_carries_no_note_of_its_own(env: Env) -> None:
    raw = matrix()
    raw["evaluation"] = {"checks": False}
    (spec, _), = certify_jobs(plan(raw, env))
    assert spec.config["n"] == 100_000
    assert not [n for n in spec.scale_notes if "certif" in n.lower() or "CERTIFY" in n]


@pytest.mark.e2e
def test_bench_run_stores_certificates_and_rows_per_radius(tmp_path: Path, data_dir: Path) -> None:
    raw = copy.deepcopy(MATRIX)
    raw["defenses"]["normalized"] = {"kind": "smoothing", "params": {"sigma": 0.5, "space": "normalized"}}
    raw["experiments"][0]["defenses"].append("normalized")
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    db = tmp_path / "r.db"
    result = bench_run(path, db, tmp_path / "art", data_dir, "--threads", "1")
    assert result.exit_code == 0, result.output

    with sqlite3.connect(db) as conn:
        jobs = dict(conn.execute("select key, config from jobs where kind='certify'").fetchall())
        rows = conn.execute(
            "select job_key, defense, metric, norm, epsilon, n, successes, value, ci_low, ci_high, outcomes, "
            "cost_per_prediction, details, scale from results where attack='certify'"
        ).fetchall()
        certs = conn.execute(
            "select job_key, position, test_index, label, prediction, count, p_lower, radius, radius_pixel "
            "from certificates order by job_key, position"
        ).fetchall()
        costs = conn.execute("select distinct cost_per_prediction from results where defense='none'")
        assert costs.fetchall() == [(1,)], "a deterministic pipeline's prediction is one forward pass"
    assert len(jobs) == 2
    by_job: dict[str, list[Any]] = {}
    for cert in certs:
        by_job.setdefault(cert[0], []).append(cert)
    for key, config in jobs.items():
        space = json.loads(config)["noise_space"]
        mine = by_job[key]
        assert [c[1] for c in mine] == list(range(8))
        # A normalized-space radius is R·std in pixels (MNIST's one channel); a pixel-space one is itself.
        scale = MNIST_STD if space == "normalized" else 1.0
        for c in mine:
            assert c[8] == pytest.approx(c[7] * scale)
            assert (c[4] is None) == (c[6] < 0.5)
        job_rows = {(r[2], r[4]): r for r in job_rows_of(rows, key)}
        assert set(job_rows) == {
            *[("certified_accuracy", r) for r in (0.0, 0.25, 0.5)],
            ("abstain_rate", 0.0),
            ("smoothed_clean_accuracy", 0.0),
        }
        certificates = [
            Certificate(ABSTAIN if c[4] is None else c[4], c[5], c[6], c[7], c[8], 210) for c in mine
        ]
        expected = certified_accuracy(certificates, [c[3] for c in mine], [0.0, 0.25, 0.5])
        for radius_row in expected:
            row = job_rows["certified_accuracy", radius_row.radius]
            _, _, _, norm, _, n, hits, value, low, high, outcomes, cost, details, scale_text = row
            assert (norm, n, hits, cost) == ("l2", 8, radius_row.certified.hits, 210)
            assert (low, high) == pytest.approx((radius_row.certified.low, radius_row.certified.high))
            assert value == pytest.approx(hits / 8) and outcomes.count("1") == hits and len(outcomes) == 8
            assert json.loads(details) == {
                "sigma": 0.5 if space == "normalized" else 0.25,
                "noise_space": space,
                "n0": 10,
                "n": 200,
                "alpha": 0.001,
                "noise_batch": 64,
                "radius_declared": pytest.approx(radius_row.radius / scale),
            }
            assert "n=200 noise draws per image" in scale_text
        assert job_rows["abstain_rate", 0.0][6] == expected[0].abstained.hits
        assert job_rows["smoothed_clean_accuracy", 0.0][6] == expected[0].clean.hits
        assert job_rows["smoothed_clean_accuracy", 0.0][6] == job_rows["certified_accuracy", 0.0][6]
    assert any(c[4] is not None for c in certs), "a trained MNIST classifier certifies some images at σ=0.25"

    again = bench_run(path, db, tmp_path / "art", data_dir, "--threads", "1")
    assert again.exit_code == 0 and "ran 0 jobs" in again.output, again.output


def job_rows_of(rows: list[Any], key: str) -> list[Any]:
    found = [r for r in rows if r[0] == key]
    assert found and all(math.isfinite(r[7]) for r in found)
    return found


def test_strided_images_are_every_kth_from_the_first(env: Env) -> None:
    test = env.dataset("mnist", "test")
    chosen, positions = select_images(test, CertifyImages(every=20, count=500))
    assert positions == list(range(0, 10_000, 20))
    assert torch.equal(chosen.labels, test.labels[::20])


def test_a_killed_certification_resumes_to_the_certificates_of_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def halfplane(z: torch.Tensor) -> torch.Tensor:
        s = z.flatten(1).sum(1) - 1.0
        return torch.stack([-s, s], 1)

    smoothed = SmoothedClassifier(halfplane, 2, GaussianNoise(GaussianSmoothing(0.5), channels=1))
    # Class 1 beyond 1.0; the images on (or next to) the boundary abstain.
    images = torch.tensor([-1.0, 0.0, 1.0, 1.02, 2.0, 3.0]).view(6, 1, 1, 1)
    params = CertifyParams(n0=10, n=300, noise_batch=64)
    whole, resumed = certify_all(smoothed, images, range(6), params, 0, JobContext())
    assert resumed == 0 and len({c.prediction for c in whole}) == 3, "both classes and an abstention"

    monkeypatch.setattr(bench.jobs.certify, "CHECKPOINT_EVERY_S", -1.0)  # save after every image
    checkpoints = Checkpoints(tmp_path / "ckpt")
    ctx = JobContext(checkpoints=checkpoints)
    first_two, _ = certify_all(smoothed, images[:2], range(2), params, 0, ctx)
    assert first_two == whole[:2]
    again, resumed = certify_all(smoothed, images, range(6), params, 0, ctx)
    assert resumed == 2 and again == whole
