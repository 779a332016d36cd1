"""Planning real matrices (datasets are loaded for their identity, nothing is trained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.api import DEFENSES, Defense, FrontEnd, sha256_file
from bench.artifacts import ArtifactStore
from bench.config import parse_matrix
from bench.data.splits import eval_subset
from bench.errors import ConfigError, WeightsError
from bench.jobs.env import Env
from bench.jobs.spec import JobSpec
from bench.plan import Planned, plan_matrix
from bench.uses import ClassifierUse, EvaluationUse

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


def test_a_changed_standard_budget_enters_the_keys_and_is_stated(env: Env) -> None:
    full = plan_matrix(parse_matrix(standard(LINF), "m.yaml"), Path("."), env)
    budget = {"autoattack": {"attacks": ["apgd-ce", "apgd-t"]}, "pgd-ce": {"restarts": 1}}
    cut = plan_matrix(parse_matrix(standard(LINF, standard_budget=budget), "m.yaml"), Path("."), env)
    before, after = evaluations(full, "attack"), evaluations(cut, "attack")
    assert [label(cut, a) for a in after] == STANDARD_LABELS
    assert after[0].key == before[0].key  # the transfer attack is the protocol's
    assert after[1].config["params"]["restarts"] == 1 and after[4].config["params"]["attacks"] == [
        "apgd-ce",
        "apgd-t",
    ]
    assert {a.key for a in after[1:]}.isdisjoint(a.key for a in before)
    (cell,) = evaluations(cut, "cell")
    notes = " | ".join(cell.scale_notes)
    assert "standard protocol budget changed: std:pgd-ce restarts 1 (protocol: 2)" in notes
    assert "fab-t, square not run (of the standard version)" in notes
    assert not any("budget" in n for n in evaluations(full, "cell")[0].scale_notes)



JAT: dict[str, Any] = {"kind": "jat", "n_train": 100, "params": {"depth": 2, "epochs": 1}}


def with_jat(experiments: list[dict[str, Any]], **classifiers: Any) -> dict[str, Any]:
    return {
        **MATRIX,
        "classifiers": {**MATRIX["classifiers"], **classifiers},
        "defenses": {**MATRIX["defenses"], "jat": JAT},
        "experiments": [*MATRIX["experiments"], *experiments],
    }


def classifier_job(planned: Planned, origin: str, arch: str, seed: int = 0) -> JobSpec:
    return next(
        s
        for s in planned.graph
        if s.config.get("origin") == origin and s.config["arch"] == arch and s.config["seed"] == seed
    )


def test_jat_trains_its_guide_in_its_front_end_job_and_is_judged_natively_with_it(env: Env) -> None:
    raw = with_jat(
        [
            {"kind": "native", "defenses": ["jat"], "guides": ["A"]},
            {"kind": "cross-model", "defenses": ["jat"], "guides": ["A"], "targets": ["C"]},
        ]
    )
    planned = plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
    (fe,) = [s for s in planned.graph if s.kind == "train-defense" and s.config["kind"] == "jat"]
    assert fe.deps == (), "no train-classifier job feeds it: it trains its classifier itself"
    (new,) = fe.config["classifiers"]
    assert (new["arch"], new["origin"], new["index"], new["seed"]) == ("mnist-a", "joint", 0, 0)
    joint = classifier_job(planned, "joint", "mnist-a")
    assert joint.kind == "train-classifier" and joint.deps == (fe.key,)
    assert planned.graph.uses[joint.key] == [ClassifierUse(classifier="A", trained_with="jat")]
    independent = classifier_job(planned, "train", "mnist-a")
    assert joint.key != independent.key, "a jointly trained A is not the independently trained A"
    cells = [(s, planned.graph.evaluation_use(s.key)) for s in planned.graph if s.kind == "cell"]
    jat = {u.relation: s for s, u in cells if u.defense == "jat"}
    assert jat["native"].deps[:2] == (fe.key, joint.key)
    c = classifier_job(planned, "train", "mnist-c")
    assert jat["cross-model"].deps[:2] == (fe.key, c.key), "transferred, it guards an independent classifier"
    assert all(u.retrains_classifier for _, u in cells if u.defense == "jat")
    others = [u for _, u in cells if u.defense != "jat"]
    assert others and all("retrains_classifier" not in u.model_dump() for u in others)


def test_adding_jat_changes_no_key_of_what_was_planned_before(env: Env) -> None:
    before = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    raw = with_jat([{"kind": "native", "defenses": ["jat"], "guides": ["B"]}])
    after = plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
    assert set(before.graph.jobs) < set(after.graph.jobs)
    for s in before.graph:
        assert "classifiers" not in s.config
        assert all(after.graph.uses[s.key][0] == use for use in before.graph.uses[s.key][:1])


def test_a_classifier_only_jat_trains_gets_no_job_of_its_own(env: Env) -> None:
    n = {"arch": "mnist-b", "dataset": "mnist", "seed": 7}
    raw = with_jat([{"kind": "native", "defenses": ["jat"], "guides": ["N"]}], N=n)
    planned = plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
    jobs = [s for s in planned.graph if s.kind == "train-classifier" and s.config["seed"] == 7]
    assert [s.config["origin"] for s in jobs] == ["joint"]
    assert planned.graph.uses[jobs[0].key] == [ClassifierUse(classifier="N", trained_with="jat")]


def test_jats_front_end_key_ignores_the_order_of_its_guides(env: Env) -> None:
    def jobs(guides: list[str]) -> tuple[str, dict[str, str]]:
        raw = {**with_jat([]), "experiments": [{"kind": "native", "defenses": ["jat"], "guides": guides}]}
        planned = plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
        (fe,) = [s for s in planned.graph if s.kind == "train-defense"]
        joint = {
            u.classifier: s.key
            for s in planned.graph
            if s.config.get("origin") == "joint"
            for u in planned.graph.uses[s.key]
            if isinstance(u, ClassifierUse)
        }
        return fe.key, joint

    assert jobs(["A", "B"]) == jobs(["B", "A"])
    assert len(set(jobs(["A", "B"])[1].values())) == 2


def test_a_target_trained_adversarially_is_marked_as_retrained(env: Env) -> None:
    at = {
        "arch": "mnist-c",
        "dataset": "mnist",
        "recipe": "madry-at",
        "train": {"epochs": 1, "crop_padding": 0, "flip": False},
    }
    raw = {
        **MATRIX,
        "classifiers": {**MATRIX["classifiers"], "AT": at},
        "experiments": [{"kind": "native", "defenses": ["none"], "guides": ["AT", "C"]}],
    }
    planned = plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
    marked = {
        u.target: u.retrains_classifier
        for s in planned.graph
        if s.kind == "cell"
        for u in planned.graph.uses[s.key]
        if isinstance(u, EvaluationUse)
    }
    assert marked == {"AT": True, "C": None}


@pytest.mark.parametrize("key", ["weights", "init_weights"])
def test_jat_given_a_pre_trained_guide_is_refused_naming_it(env: Env, tmp_path: Path, key: str) -> None:
    """A guide loaded from weights, or one that would start its training from them: JAT would throw them
    away and train a new classifier from scratch."""
    from safetensors.torch import save_file

    from bench.api.classifier import build_classifier

    model = build_classifier("mnist-c", 10, (0.1307,), (0.3081,))
    path = tmp_path / "c.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    p = {"arch": "mnist-c", "dataset": "mnist", key: str(path)}
    raw = with_jat([{"kind": "native", "defenses": ["jat"], "guides": ["P"]}], P=p)
    refused = rf"'jat' \(jat\) trains its guide .* guide 'P' is pre-trained \({key}: "
    with pytest.raises(ConfigError, match=refused):
        plan_matrix(parse_matrix(raw, "m.yaml"), tmp_path, env)


SD: dict[str, Any] = {"kind": "static-denoiser", "n_train": 100, "params": {"width": 2, "epochs": 1}}


def static_denoiser_file(path: Path, width: int) -> Path:
    from safetensors.torch import save_file

    defense = DEFENSES.get("static-denoiser")
    frontend = defense().build(defense.Params.model_validate({"width": width}), (1, 28, 28))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in frontend.state_dict().items()}, path)
    return path


def with_front_ends(**defenses: Any) -> dict[str, Any]:
    """MATRIX with these defense entries added to its native experiment (guides A and B)."""
    experiments = [dict(e) for e in MATRIX["experiments"]]
    experiments[0]["defenses"] = [*experiments[0]["defenses"], *defenses]
    return {**MATRIX, "defenses": {**MATRIX["defenses"], **defenses}, "experiments": experiments}


def front_end_job(planned: Planned, defense: str) -> JobSpec:
    (spec,) = {s.key: s for s in planned.graph if s.kind == "train-defense" and any(
        getattr(u, "defense", None) == defense for u in planned.graph.uses[s.key])}.values()
    return spec


def test_a_front_end_loaded_from_weights_is_keyed_by_content_and_trains_nothing(
    env: Env, tmp_path: Path
) -> None:
    import shutil

    first = static_denoiser_file(tmp_path / "one" / "sd.safetensors", 2)
    second = tmp_path / "two" / "sd.safetensors"
    second.parent.mkdir()
    shutil.copy(first, second)
    jobs = []
    for path in (first, second):
        raw = with_front_ends(sd={"kind": "static-denoiser", "params": {"width": 2}, "weights": str(path)})
        planned = plan_matrix(parse_matrix(raw, "m.yaml"), tmp_path, env)
        jobs.append(front_end_job(planned, "sd"))
        assert jobs[-1].locations == {"weights": str(path)}
    assert jobs[0].key == jobs[1].key
    assert jobs[0].deps == () and jobs[0].data == "" and jobs[0].scale_notes == ()
    assert jobs[0].config["weights_sha256"] == sha256_file(first) and "dataset" not in jobs[0].config
    before = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    assert set(before.graph.jobs) <= set(planned.graph.jobs), "no job planned before changes its key"
    assert all("weights_sha256" not in s.config for s in before.graph if s.kind == "train-defense")


def test_a_weights_file_that_does_not_fit_the_defense_stops_planning(env: Env, tmp_path: Path) -> None:
    path = static_denoiser_file(tmp_path / "wide.safetensors", 3)
    raw = with_front_ends(sd={"kind": "static-denoiser", "params": {"width": 2}, "weights": str(path)})
    with pytest.raises(WeightsError, match="shape mismatch"):
        plan_matrix(parse_matrix(raw, "m.yaml"), tmp_path, env)


def test_a_front_end_trained_from_another_depends_on_its_job_for_the_same_guides(env: Env) -> None:
    tuned = {**SD, "init_from": "base"}
    planned = plan_matrix(parse_matrix(with_front_ends(base=SD, tuned=tuned), "m.yaml"), Path("."), env)
    base, job = front_end_job(planned, "base"), front_end_job(planned, "tuned")
    guides = base.deps
    assert len(guides) == 2 and job.deps == (*guides, base.key), "the guides, then the init's job"
    assert job.label.endswith(", from base")
    # The init's job enters this one's key, not the other way round.
    changed = {**SD, "params": {"width": 2, "epochs": 2}}
    again = plan_matrix(parse_matrix(with_front_ends(base=changed, tuned=tuned), "m.yaml"), Path("."), env)
    assert front_end_job(again, "tuned").key != job.key
    reseeded = with_front_ends(base=SD, tuned={**tuned, "seed": 3})
    again = plan_matrix(parse_matrix(reseeded, "m.yaml"), Path("."), env)
    assert front_end_job(again, "base").key == base.key
    # Or the init's job for the guides named.
    named = {**tuned, "init_guides": ["C"]}
    planned = plan_matrix(parse_matrix(with_front_ends(base=SD, tuned=named), "m.yaml"), Path("."), env)
    init = planned.graph[front_end_job(planned, "tuned").deps[-1]]
    assert init.kind == "train-defense" and len(init.deps) == 1
    assert planned.graph[init.deps[0]].label.startswith("classifier C ")


def test_an_init_is_planned_at_the_sigma_of_the_front_end_it_starts(env: Env) -> None:
    small = {"depth": 3, "width": 4, "epochs": 1}
    mse = {"kind": "denoised-smoothing", "n_train": 100, "params": {**small, "objective": "mse"}}
    tuned = {**mse, "params": {**small, "objective": "stab+mse"}, "init_from": "mse"}
    raw = {
        **with_front_ends(tuned=tuned),
        "defenses": {"mse": mse, "tuned": tuned},
        "experiments": [{"kind": "native", "defenses": ["tuned"], "guides": ["A"]}],
        "attacks": {"pgd": {"kind": "smoothed-pgd"}},
        "certify": {"sigmas": [0.25, 0.5], "n": 100, "n_images": 10},
    }
    planned = plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
    tuned_jobs = [s for s in planned.graph if s.label.startswith("front-end tuned (denoised-smoothing)")]
    assert len(tuned_jobs) == 2
    for job in tuned_jobs:
        init = planned.graph[job.deps[-1]]
        assert init.config["params"]["objective"] == "mse"
        assert init.config["params"]["sigma"] == job.config["params"]["sigma"]
    # The evaluation jobs of the two pipelines say which sigma they attack.
    cells = sorted(s.label for s in planned.graph if s.kind == "cell")
    expected = [f"cell linf eps={e}: tuned sigma={s} -> A" for e in (0.1, 0.3) for s in (0.25, 0.5)]
    assert cells == expected
