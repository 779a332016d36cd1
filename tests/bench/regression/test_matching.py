"""Pairing rows: by job key to compare, by labels to report drift and its causes, the rest missing or new."""

from __future__ import annotations

from bench.regression.matching import match
from tests.bench.regression.rows import row

SAME = "1" * 10


def test_rows_of_one_job_key_metric_and_radius_are_compared() -> None:
    ours = [row(SAME), row(SAME, metric="clean_accuracy")]
    theirs = [row("0" * 10), row(SAME, metric="clean_accuracy")]
    m = match(ours, theirs)
    assert [(p.by, p.current["metric"], p.baseline["outcomes"]) for p in m.compared] == [
        ("key", "robust_accuracy", "0" * 10),
        ("key", "clean_accuracy", SAME),
    ]
    assert (m.drifted, m.missing, m.new) == ((), (), ())
    assert m.overlap


def test_another_job_at_the_same_place_is_drift_with_every_change_named() -> None:
    ours = row(
        "1" * 5,
        job_key="new",
        config={"attack": "pgd", "params": {"steps": 1}},
        scale="reduced: evaluated on 5 of 10000 mnist test images",
        examples_sha256="f" * 64,
        frontend_job="f2",
        frontend_config={"lr": 1e-9},
    )
    m = match([ours], [row(SAME)])
    assert m.compared == () and len(m.drifted) == 1
    assert m.drifted[0].drift == (
        "n: 10 → 5",
        f"test examples: {'e' * 59}… → {'f' * 59}…",
        "scale note gone: full",
        "scale note new: reduced: evaluated on 5 of 10000 mnist test images",
        "attack config params.steps: 20 → 1",
        "front-end config lr: 0.001 → 1e-09",
    )


def test_a_new_key_with_the_same_stored_configs_is_still_drift() -> None:
    m = match([row(SAME, job_key="new", classifier_job="c2")], [row(SAME)])
    assert m.drifted[0].drift == ("classifier job differs (same config: its data or code version changed)",)
    m = match([row(SAME, job_key="new")], [row(SAME)])
    assert m.drifted[0].drift == ("job key differs, stored configs agree (its data or code version changed)",)


def test_a_moved_radius_is_drift_when_the_pairing_is_unambiguous() -> None:
    moved = match([row(SAME, eps=0.25)], [row(SAME, eps=0.3)])
    assert moved.drifted[0].drift[0] == "eps: 0.3 → 0.25"
    two_each = match([row(SAME, eps=0.2), row(SAME, eps=0.25)], [row(SAME, eps=0.3), row(SAME, eps=0.1)])
    assert two_each.drifted == ()
    assert len(two_each.missing) == 2 and len(two_each.new) == 2 and not two_each.overlap


def test_unpaired_rows_are_missing_from_the_run_or_new_in_it() -> None:
    ours = [row(SAME), row(SAME, defense="bits", job_key="b")]
    theirs = [row(SAME), row(SAME, target="D", job_key="d")]
    m = match(ours, theirs)
    assert len(m.compared) == 1
    assert [r["target"] for r in m.missing] == ["D"] and [r["defense"] for r in m.new] == ["bits"]


def test_a_radius_read_back_from_json_matches_the_stores() -> None:
    m = match([row(SAME, job_key="k", eps=0.1 + 0.2)], [row(SAME, job_key="k", eps=0.3)])
    assert len(m.compared) == 1
    m = match([row(SAME, job_key="new", eps=0.1 + 0.2)], [row(SAME, job_key="k", eps=0.3)])
    assert m.drifted[0].drift == ("job key differs, stored configs agree (its data or code version changed)",)
