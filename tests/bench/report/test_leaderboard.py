"""Tests for bench.report.leaderboard on small in-memory views: one board per (dataset, norm, radius),
attacked and certified numbers of one pipeline on one row, training cost with its device, soundness, order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bench.report.data import CertifiedPoint, CertifiedView, MatrixKey, RunView
from bench.report.leaderboard import Board, BoardRow, Training, leaderboards
from bench.report.pages import matrix_page
from bench.storage.models import Run
from tests.bench.report.test_figures import metric, view_cell


def run(id_: int, device: str) -> Run:
    return Run(id=id_, matrix_name="m", matrix_path="m.yaml", matrix_sha256="f" * 64, matrix={},
               started_at=datetime(2024, 5, 1), versions={}, device=device, status="done")


def certified(sigma: float, values: dict[float, float], **extra: Any) -> CertifiedView:
    fields: dict[str, Any] = dict(
        job_key=f"certify-{sigma}", experiment=1, kind="native", defense="smooth", defense_kind="smoothing",
        guides=(), target="A", dataset="mnist", sigma=sigma, noise_space="pixel", n0=100, samples=1000,
        alpha=0.001, noise_batch=100, preset=None,
        points=tuple(CertifiedPoint(r, r, metric(v)) for r, v in values.items()),
        abstain=metric(0.05), smoothed_clean=metric(0.9), scale="full", wall_s=1.0, cost_per_prediction=1100,
        retrains_classifier=False, computed_in=2, relation="no-guides",
    )
    return CertifiedView(**(fields | extra))


def boards(view: RunView) -> list[Board]:
    page = matrix_page(MatrixKey("m", "m.yaml"), view, "matrix-m.html")
    out, _ = leaderboards([(page, view)], {1: run(1, "cpu"), 2: run(2, "cuda: H200")})
    return out


def rows(board: Board) -> list[tuple[str, str, float | None]]:
    def score(r: BoardRow) -> float | None:
        return r.score

    return [(r.defense, r.target, score(r)) for r in board.rows]


def test_one_board_per_dataset_norm_and_radius_ranked_best_first() -> None:
    view = RunView(run(1, "cpu"))
    view.cells = [
        view_cell("rtfe", "R20", 8 / 255, 0.4),
        view_cell("none", "R20", 8 / 255, 0.02, defense_kind="none", guides=(), relation="no-guides"),
        view_cell("rtfe", "R32", 8 / 255, 0.5, relation="cross-model"),
        view_cell("rtfe", "R20", 4 / 255, 0.6),
        view_cell("aaa", "A", 0.3, 0.7, dataset="mnist", train_dataset="mnist"),
    ]
    got = boards(view)
    assert [(b.dataset, b.norm, round(b.eps * 255, 6)) for b in got] == [
        ("cifar10", "linf", 4.0), ("cifar10", "linf", 8.0), ("mnist", "linf", 76.5)
    ]
    assert rows(got[1]) == [("rtfe", "R32", 0.5), ("rtfe", "R20", 0.4), ("none", "R20", 0.02)]
    assert [r.rank for r in got[1].rows] == [1, 2, 3]
    assert [r.relation for r in got[1].rows] == ["cross-model", "native", "undefended"]
    assert [b.anchor for b in got] == ["board-1", "board-2", "board-3"]


def test_a_certified_pipeline_gets_a_row_per_radius_above_zero_beside_its_attacked_number() -> None:
    view = RunView(run(1, "cpu"))
    attacked = view_cell("smooth", "A", 0.5, 0.52, norm="l2", dataset="mnist", defense_kind="smoothing",
                         guides=(), relation="no-guides", sigma=0.25, cost_per_prediction=21)
    view.cells = [attacked]
    view.certified = [certified(0.25, {0.0: 0.9, 0.5: 0.41, 1.0: 0.2}), certified(0.5, {0.5: 0.45})]
    got = boards(view)
    assert [(b.norm, b.eps) for b in got] == [("l2", 0.5), ("l2", 1.0)]
    at_half = got[0]
    assert at_half.certified and at_half.attacked
    # sigma 0.25 was attacked and certified at 0.5: one row with both numbers and both costs.
    both = next(r for r in at_half.rows if r.sigma == 0.25)
    assert (both.robust, both.certified) == (attacked.robust, metric(0.41))
    assert both.costs == [21, 1100] and both.link == "matrix-m.html#transfer-1"
    # sigma 0.5 was only certified: ranked by its certified accuracy, its clean number the smoothed one's.
    only = next(r for r in at_half.rows if r.sigma == 0.5)
    assert only.robust is None and only.certified == metric(0.45) and only.clean == metric(0.9)
    assert only.link == "matrix-m.html#certified-1" and only.run_link == "matrix-m.html#run-2"
    assert len(at_half.rows) == 2
    assert not got[1].attacked and rows(got[1]) == [("smooth", "A", 0.2)]


def test_training_cost_is_the_front_end_jobs_with_the_device_of_the_run_that_computed_it() -> None:
    view = RunView(run(1, "cpu"))
    view.cells = [view_cell("rtfe", "R20", 8 / 255, 0.4), view_cell("denoise", "R20", 8 / 255, 0.3),
                  view_cell("other", "R20", 8 / 255, 0.2)]
    view.frontends = [
        {"label": "rtfe", "guides": ["R20"], "key": "k1", "config": {}, "metrics": {}, "wall_s": 3600.0,
         "run_id": 2},
        # A front-end trained without guides serves every guide set.
        {"label": "denoise", "guides": [], "key": "k2", "config": {}, "metrics": {}, "wall_s": 5.0,
         "run_id": 9},
    ]
    (board,) = boards(view)
    training = {r.defense: r.training for r in board.rows}
    assert training == {
        "rtfe": Training(3600.0, "cuda: H200"),
        "denoise": Training(5.0, None),  # computed in a run the store no longer has
        "other": None,
    }


def test_soundness_is_reliable_unreliable_or_unchecked() -> None:
    view = RunView(run(1, "cpu"))
    view.cells = [
        view_cell("a", "R20", 8 / 255, 0.4, failed_checks=(("dead-gradients", "zero"),),
                  passed_checks=(("fgsm", "ok"),)),
        view_cell("b", "R20", 8 / 255, 0.3, passed_checks=(("fgsm", "ok"),)),
        view_cell("c", "R20", 8 / 255, 0.2, scale="reduced: 100 of 10000 test images"),
    ]
    (board,) = boards(view)
    assert [(r.defense, r.soundness) for r in board.rows] == [("a", "unreliable"), ("b", "reliable"),
                                                             ("c", "unchecked")]
    assert board.rows[2].reduced == ["reduced: 100 of 10000 test images"]
    assert board.notes == [(1, "100 of 10000 test images")]
