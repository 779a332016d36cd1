"""Planning real matrices (datasets are loaded for their identity, nothing is trained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.api import DEFENSES, Defense, FrontEnd
from bench.artifacts import ArtifactStore
from bench.config import parse_matrix
from bench.data.splits import eval_subset
from bench.errors import ConfigError
from bench.jobs.env import Env
from bench.jobs.spec import JobSpec
from bench.plan import plan_matrix

MATRIX: dict[str, Any] = {
    "name": "plan",
    "classifiers": {
        "A": {"arch": "mnist-a", "dataset": "mnist", "train": {"epochs": 1, "n_train": 1000}},
        "B": {"arch": "mnist-b", "dataset": "mnist", "train": {"epochs": 1, "n_train": 1000}},
        "C": {"arch": "mnist-c", "dataset": "mnist"},
        "D": {"arch": "mnist-c", "dataset": "mnist", "seed": 1},
    },
    "defenses": {"aaa": {"kind": "aaa", "n_train": 100}, "none": {"kind": "none"}},
    "threats": {"linf": {"norm": "linf", "epsilons": [0.1, 0.3]}},
    "attacks": {"pgd": {"kind": "pgd"}, "fgsm": {"kind": "fgsm"}},
    "evaluation": {"n_eval": 50},
    "experiments": [
        {"kind": "native", "defenses": ["aaa", "none"], "guides": ["A", "B"]},
        {"kind": "cross-model", "defenses": ["aaa", "none"], "guides": ["B", "A"], "targets": ["C"]},
        {
            "kind": "ensemble-size",
            "defenses": ["aaa"],
            "pool": ["A", "B", "C"],
            "sizes": [1, 3],
            "targets": ["D"],
        },
    ],
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Env:
    return Env(data_dir, False, ArtifactStore(tmp_path_factory.mktemp("art")))


def kinds(planned: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for spec in planned.graph:
        out[spec.kind] = out.get(spec.kind, 0) + 1
    return out


def test_front_end_is_shared_across_experiments_and_guide_order(env: Env) -> None:
    planned = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    # front-ends: aaa[A+B] (native and cross-model, guide order irrelevant), aaa[1 guide], aaa[A+B+C], none
    assert kinds(planned)["train-defense"] == 4
    assert kinds(planned)["train-classifier"] == 4
    cells = [s for s in planned.graph if s.kind == "cell"]
    native = {
        s.deps[0]
        for s in cells
        for u in planned.graph.uses[s.key]
        if u.kind == "native" and u.defense == "aaa"
    }
    cross = {
        s.deps[0]
        for s in cells
        for u in planned.graph.uses[s.key]
        if u.kind == "cross-model" and u.defense == "aaa"
    }
    assert len(native) == 1 and native == cross


def test_evaluation_jobs_and_relations(env: Env) -> None:
    planned = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    cells = [s for s in planned.graph if s.kind == "cell"]
    uses = [u for s in cells for u in planned.graph.uses[s.key]]
    relations = {(u.defense, u.target, u.relation) for u in uses}
    assert ("aaa", "A", "native") in relations and ("aaa", "C", "cross-model") in relations
    assert ("none", "C", "no-guides") in relations
    ensemble = [u for u in uses if u.kind == "ensemble-size"]
    assert sorted({u.m for u in ensemble}) == [1, 3]
    for cell in cells:
        attacks = cell.deps[2:]
        assert len(attacks) == 2 and all(planned.graph[k].kind == "attack" for k in attacks)
    # none is the same pipeline in native and cross-model: one job, two uses
    assert all(planned.graph[k].kind in ("attack", "cell") for k in planned.evaluations)


def test_plan_is_deterministic_and_notes_reduced_scale(env: Env) -> None:
    a = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    b = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    assert list(a.graph.jobs) == list(b.graph.jobs)
    cell = next(s for s in a.graph if s.kind == "cell")
    notes = " ".join(cell.scale_notes)
    assert "evaluated on 50 of 10000 mnist test images" in notes


def test_changing_an_upstream_parameter_changes_downstream_keys(env: Env) -> None:
    a = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    changed = {**MATRIX, "defenses": {**MATRIX["defenses"], "aaa": {"kind": "aaa", "n_train": 101}}}
    b = plan_matrix(parse_matrix(changed, "m.yaml"), Path("."), env)

    def cell_keys(p: Any, defense: str) -> set[str]:
        return {s.key for s in p.graph if s.kind == "cell" and p.graph.uses[s.key][0].defense == defense}

    assert cell_keys(a, "none") == cell_keys(b, "none")
    assert not cell_keys(a, "aaa") & cell_keys(b, "aaa")


def test_cross_dataset_trains_on_guides_data_and_evaluates_on_targets(env: Env) -> None:
    matrix = {
        **MATRIX,
        "classifiers": {**MATRIX["classifiers"], "F": {"arch": "fashion-cnn", "dataset": "fashion-mnist"}},
        "experiments": [{"kind": "cross-dataset", "defenses": ["aaa"], "guides": ["F"], "targets": ["C"]}],
    }
    planned = plan_matrix(parse_matrix(matrix, "m.yaml"), Path("."), env)
    frontend = next(s for s in planned.graph if s.kind == "train-defense")
    assert frontend.config["dataset"] == "fashion-mnist"
    cell = next(s for s in planned.graph if s.kind == "cell")
    use = planned.graph.uses[cell.key][0]
    assert (use.relation, use.dataset, use.train_dataset) == (
        "cross-dataset",
        "mnist",
        "fashion-mnist",
    )
    assert cell.data == eval_subset(env.dataset("mnist", "test"), 50, 0).identity


def test_ensemble_draws_are_seeded_and_distinct(env: Env) -> None:
    matrix = {
        **MATRIX,
        "experiments": [
            {
                "kind": "ensemble-size",
                "defenses": ["aaa"],
                "pool": ["A", "B", "C"],
                "sizes": [1, 2],
                "draws": 3,
                "targets": ["D"],
                "seed": 4,
            }
        ],
    }
    a = plan_matrix(parse_matrix(matrix, "m.yaml"), Path("."), env)
    b = plan_matrix(parse_matrix(matrix, "m.yaml"), Path("."), env)

    def guide_sets(p: Any) -> list[tuple[int, int, tuple[str, ...]]]:
        return sorted(
            (u.m, u.draw, tuple(u.guides))
            for s in p.graph
            if s.kind == "cell"
            for u in p.graph.uses[s.key]
        )

    assert guide_sets(a) == guide_sets(b)
    assert {m for m, _, g in guide_sets(a) if len(g) == m} == {1, 2}


def test_weights_files_are_keyed_by_content_not_by_path(env: Env, tmp_path: Path) -> None:
    import shutil

    import torch
    from safetensors.torch import save_file

    from bench.api.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier("mnist-c", 10, (0.1307,), (0.3081,))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    first = tmp_path / "one" / "c.safetensors"
    first.parent.mkdir()
    save_file(state, first)
    second = tmp_path / "two" / "c.safetensors"
    second.parent.mkdir()
    shutil.copy(first, second)
    keys = []
    for path in (first, second):
        raw = {**MATRIX, "classifiers": {**MATRIX["classifiers"], "C": {"arch": "mnist-c", "dataset": "mnist",
                                                                       "weights": str(path)}}}
        planned = plan_matrix(parse_matrix(raw, "m.yaml"), tmp_path, env)
        spec = next(s for s in planned.graph if s.config.get("origin") == "weights")
        assert spec.locations["weights"] == str(path)
        keys.append(spec.key)
    assert keys[0] == keys[1]


def test_weights_that_record_their_normalization_plan_the_job_a_matrix_stating_it_plans(
    env: Env, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    from bench.api.classifier import build_classifier
    from bench.errors import ConfigError

    model = build_classifier("mnist-c", 10, (0.1307,), (0.3081,))
    artifact, plain = tmp_path / "artifact.safetensors", tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, artifact)
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, plain)

    def weights_job(path: Path, **stated: Any) -> Any:
        c = {"arch": "mnist-c", "dataset": "mnist", "weights": str(path), **stated}
        raw = {**MATRIX, "classifiers": {**MATRIX["classifiers"], "C": c}}
        planned = plan_matrix(parse_matrix(raw, "m.yaml"), tmp_path, env)
        return next(s for s in planned.graph if s.config.get("origin") == "weights")

    recorded = weights_job(artifact)
    assert recorded.config["normalization"] == {"mean": [0.1307], "std": [0.3081]}
    assert recorded.key == weights_job(artifact, normalization="dataset").key
    assert weights_job(plain, normalization="none").config["normalization"] == {"mean": [0.0], "std": [1.0]}
    with pytest.raises(ConfigError, match="classifier 'C' is loaded from weights that do not record"):
        weights_job(plain)


def test_ensemble_draws_never_repeat_a_guide_set() -> None:
    from bench.plan import _distinct_draws

    pool = ["A", "B", "C", "D"]
    assert _distinct_draws(pool, 4, 3, 0) == [pool], "one set of size 4 exists, drawn once"
    pairs = _distinct_draws(pool, 2, 10, 0)
    assert len(pairs) == 6 and len({tuple(p) for p in pairs}) == 6
    assert _distinct_draws(pool, 2, 2, 7) == _distinct_draws(pool, 2, 2, 7)


def test_a_repeated_pool_entry_cannot_make_the_draws_loop_forever() -> None:
    from bench.plan import _distinct_draws

    assert _distinct_draws(["A", "A", "B"], 2, 3, 0) == [["A", "B"]]


def test_an_attack_revision_is_part_of_its_jobs_keys_only(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.api import ATTACKS

    def keys() -> dict[str, set[str]]:
        planned = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
        out: dict[str, set[str]] = {}
        for s in planned.graph:
            out.setdefault(str(s.config.get("attack", s.kind)), set()).add(s.key)
        return out

    before = keys()
    monkeypatch.setattr(ATTACKS.get("fgsm"), "revision", 99)
    after = keys()
    assert after["fgsm"].isdisjoint(before["fgsm"])
    assert after["pgd"] == before["pgd"] and after["train-classifier"] == before["train-classifier"]


def test_a_reduced_attack_budget_is_a_scale_note_of_its_job_and_cell(env: Env) -> None:
    matrix = {
        **MATRIX,
        "attacks": {
            "aa-short": {"kind": "autoattack", "params": {"n_iter": 10}},
            "aa": {"kind": "autoattack", "params": {"seed": 1}},
        },
        "experiments": [{"kind": "native", "defenses": ["none"], "guides": ["C"]}],
    }
    planned = plan_matrix(parse_matrix(matrix, "m.yaml"), Path("."), env)
    note = "attack autoattack: 10 of 100 APGD/FAB iterations"
    notes = {
        planned.graph.evaluation_use(s.key).attack: s.scale_notes
        for s in planned.graph
        if s.kind in ("attack", "cell") and planned.graph.evaluation_use(s.key).eps == 0.3
    }
    assert note in notes["aa-short"] and note in notes["worst-case"]
    assert not any(n.startswith("attack ") for n in notes["aa"])
    assert "evaluated on 50 of 10000 mnist test images" in notes["aa"]


def test_a_front_ends_validation_images_enter_its_job_only_when_it_asks_for_some(env: Env) -> None:
    def aaa_job(**entry: Any) -> JobSpec:
        matrix = {**MATRIX, "defenses": {**MATRIX["defenses"], "aaa": {**MATRIX["defenses"]["aaa"], **entry}}}
        planned = plan_matrix(parse_matrix(matrix, "m.yaml"), Path("."), env)
        return next(s for s in planned.graph if s.kind == "train-defense" and s.config["kind"] == "aaa")

    base, zero, held_out = aaa_job(), aaa_job(n_val=0), aaa_job(n_val=500)
    assert "n_val" not in base.config and zero.key == base.key, "matrices without n_val keep their keys"
    assert held_out.config["n_val"] == 500 and held_out.config["n_train"] == 100
    assert held_out.key != base.key and held_out.data != base.data, "it trains on other images"
    with pytest.raises(ConfigError, match=r"n_val=10000000 \(with n_train=100\) leaves no training images"):
        aaa_job(n_val=10_000_000)


class RandomizedFrontEnd(FrontEnd):
    randomized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.01 * torch.randn(x.shape, generator=self.rng(x.device), device=x.device)).clamp(0, 1)


class RandomizedDefense(Defense):
    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return RandomizedFrontEnd()


if "test-randomized" not in DEFENSES:
    DEFENSES.add("test-randomized", RandomizedDefense)


def standard(threats: dict[str, Any], defense: str = "none", **evaluation: Any) -> dict[str, Any]:
    """One undefended (or ``defense``) pipeline under the standard protocol: no attacks: block."""
    raw = {k: v for k, v in MATRIX.items() if k != "attacks"}
    defenses = {**MATRIX["defenses"], "test-randomized": {"kind": "test-randomized"}}
    return {
        **raw,
        "defenses": defenses,
        "threats": threats,
        "evaluation": {**MATRIX["evaluation"], **evaluation},
        "experiments": [{"kind": "native", "defenses": [defense], "guides": ["A"]}],
    }


def evaluations(planned: Any, kind: str) -> list[JobSpec]:
    return [s for s in planned.graph if s.kind == kind]


def label(planned: Any, spec: JobSpec) -> str:
    return str(planned.graph.evaluation_use(spec.key).attack)


LINF = {"linf": {"norm": "linf", "epsilons": [0.3]}}
STANDARD_LABELS = ["std:transfer", "std:pgd-ce", "std:pgd-margin", "std:bpda-frontend", "std:autoattack"]


def test_standard_protocol_plans_its_attacks_as_a_cascade(env: Env) -> None:
    planned = plan_matrix(parse_matrix(standard(LINF), "m.yaml"), Path("."), env)
    attacks = evaluations(planned, "attack")
    assert [label(planned, a) for a in attacks] == STANDARD_LABELS
    assert [a.config["attack"] for a in attacks] == ["transfer-pgd", "pgd", "pgd", "pgd", "autoattack"]
    assert attacks[0].config["params"]["surrogate"] == "undefended"
    assert [a.config["params"].get("loss") for a in attacks[1:4]] == ["ce", "margin", "ce"]
    assert [a.config["bpda"] for a in attacks] == [True, True, True, "frontend", True]
    assert attacks[4].config["params"]["version"] == "standard"
    # Each attack job depends on the one before it, so the order and its inputs are part of the keys.
    assert len(attacks[0].deps) == 2
    for before, after in zip(attacks, attacks[1:], strict=False):
        assert after.deps[:2] == before.deps[:2] and after.deps[2:] == (before.key,)
    (cell,) = evaluations(planned, "cell")
    assert cell.deps[2:] == tuple(a.key for a in attacks)
    assert all(s.config["standard_protocol"] == 1 for s in [*attacks, cell])
    use = planned.graph.evaluation_use(cell.key)
    assert (use.standard_protocol, use.attacks, use.cascade) == (1, STANDARD_LABELS, STANDARD_LABELS)


def test_standard_protocol_version_is_part_of_every_attack_and_cell_key(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = plan_matrix(parse_matrix(standard(LINF), "m.yaml"), Path("."), env)
    monkeypatch.setattr("bench.config.STANDARD_PROTOCOL_VERSION", 2)
    v2 = plan_matrix(parse_matrix(standard(LINF), "m.yaml"), Path("."), env)
    for kind in ("train-classifier", "train-defense"):
        assert {s.key for s in evaluations(v1, kind)} == {s.key for s in evaluations(v2, kind)}
    for kind in ("attack", "cell"):
        assert not {s.key for s in evaluations(v1, kind)} & {s.key for s in evaluations(v2, kind)}


def test_standard_protocol_leaves_out_attacks_the_norm_does_not_suit(env: Env) -> None:
    l1 = {"l1": {"norm": "l1", "epsilons": [10.0]}}
    planned = plan_matrix(parse_matrix(standard(l1), "m.yaml"), Path("."), env)
    assert [label(planned, a) for a in evaluations(planned, "attack")] == ["std:autoattack"]


def test_a_randomized_pipeline_gets_autoattack_rand(env: Env) -> None:
    planned = plan_matrix(parse_matrix(standard(LINF, "test-randomized"), "m.yaml"), Path("."), env)
    last = evaluations(planned, "attack")[-1]
    assert (label(planned, last), last.config["attack"]) == ("std:autoattack-rand", "autoattack-rand")


def test_a_custom_cascade_orders_its_attacks_and_the_rest_run_side_by_side(env: Env) -> None:
    raw = {**MATRIX, "attacks": {**MATRIX["attacks"], "pgd5": {"kind": "pgd", "params": {"steps": 5}}},
           "evaluation": {**MATRIX["evaluation"], "cascade": ["fgsm", "pgd5"]},
           "experiments": [{"kind": "native", "defenses": ["none"], "guides": ["A"]}]}
    planned = plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
    cells = {s.config["eps"]: s for s in evaluations(planned, "cell")}
    by_eps: dict[float, dict[str, JobSpec]] = {}
    for a in evaluations(planned, "attack"):
        by_eps.setdefault(a.config["eps"], {})[label(planned, a)] = a
    for eps, mine in by_eps.items():
        assert list(mine) == ["fgsm", "pgd5", "pgd"]  # the cascade first, in its order
        assert len(mine["fgsm"].deps) == 2 and mine["pgd5"].deps[2:] == (mine["fgsm"].key,)
        assert len(mine["pgd"].deps) == 2
        use = planned.graph.evaluation_use(cells[eps].key)
        assert (use.attacks, use.cascade) == (["fgsm", "pgd5", "pgd"], ["fgsm", "pgd5"])
        assert use.standard_protocol is None
    # eps 0.3 also counts what was broken at 0.1: the cascade's last job there, and the side-by-side attack.
    small = by_eps[0.1]
    assert cells[0.1].deps[2:] == tuple(a.key for a in small.values())
    own = tuple(a.key for a in by_eps[0.3].values())
    assert cells[0.3].deps[2:] == (*own, small["pgd5"].key, small["pgd"].key)


def test_a_custom_set_side_by_side_keeps_its_jobs(env: Env) -> None:
    planned = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    assert all(len(a.deps) == 2 for a in evaluations(planned, "attack"))
    for cell in evaluations(planned, "cell"):
        attacks = [planned.graph[k] for k in cell.deps[2:]]
        assert len(attacks) == 2 and all(a.config["eps"] == cell.config["eps"] for a in attacks)
        assert "standard_protocol" not in cell.config
        assert planned.graph.evaluation_use(cell.key).cascade is None


def test_a_classifier_may_name_its_recipe_and_naming_the_default_keeps_its_key(env: Env) -> None:
    def classifier_job(**entry: Any) -> JobSpec:
        a = {**MATRIX["classifiers"]["A"], **entry}
        matrix = {**MATRIX, "classifiers": {**MATRIX["classifiers"], "A": a}}
        planned = plan_matrix(parse_matrix(matrix, "m.yaml"), Path("."), env)
        jobs = (s for s in planned.graph if s.kind == "train-classifier")
        return next(s for s in jobs if s.config["arch"] == "mnist-a")

    base, named = classifier_job(), classifier_job(recipe="mnist")
    adversarial = classifier_job(recipe="madry-at")
    assert base.config["recipe"] == "mnist" and named.key == base.key
    assert adversarial.config["recipe"] == "madry-at" and adversarial.key != base.key
    assert adversarial.config["train"]["attack_steps"] == 7, "the named recipe's defaults are resolved"
    assert "classifier A trained 1 of 205 epochs" in adversarial.scale_notes
