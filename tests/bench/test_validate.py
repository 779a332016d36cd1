"""Semantic checks of a matrix that its schema cannot express."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors.torch import save_file
from torch import nn

from bench.api import CLASSIFIERS, build_classifier, register_classifier
from bench.config import load_matrix
from bench.validate import validate_matrix
from tests.bench.test_config import edit, problems


@pytest.mark.parametrize("kind", ["pgd-norouzzadeh", "pgd"])
def test_pgd_that_cannot_reach_the_edge_of_the_ball_is_refused(tmp_path: Path, kind: str) -> None:
    params = {} if kind == "pgd-norouzzadeh" else {"steps": 10, "step_sizes": [0.01]}
    msg = problems(edit(attacks={"short": {"kind": kind, "params": params}}), tmp_path)
    assert "attacks.short" in msg and "cannot reach the edge of the ball" in msg


def test_the_same_problem_is_reported_once(tmp_path: Path) -> None:
    msg = problems(edit(threats__linf__epsilons=[1.5]), tmp_path)
    assert msg.count("exceeds 1") == 1


def test_a_misspelt_parameter_gets_the_closest_valid_key(tmp_path: Path) -> None:
    msg = problems(edit(defenses__aaa__params={"widht": 8}), tmp_path)
    assert "defenses.aaa.params.widht: unknown key" in msg and "did you mean 'width'?" in msg


def test_a_bad_choice_is_not_described_twice(tmp_path: Path) -> None:
    msg = problems(edit(threats__linf__norm="l3"), tmp_path)
    assert msg.count("'linf', 'l2' or 'l1'") == 1


def test_a_zoo_model_with_another_class_count_is_refused_before_any_work(tmp_path: Path) -> None:
    raw = edit(classifiers__C={"source": "torchvision:resnet18", "dataset": "mnist"})
    msg = problems(raw, tmp_path)
    assert "classifiers.C.source" in msg and "has 1000 classes but the dataset has 10" in msg


@pytest.mark.parametrize(
    "classifier, expected",
    [
        ({"source": "torchvision:resnet18", "dataset": "mnist", "arch": "mnist-c"}, "remove arch"),
        ({"source": "torchvision:resnet18", "dataset": "mnist", "train": {"epochs": 1}}, "remove train"),
        ({"arch": "mnist-c", "dataset": "mnist", "weights": "w.safetensors", "train": {"epochs": 1}},
         "is not trained: remove 'train'"),
        ({"source": "torchvision:resnet18", "dataset": "mnist", "recipe": "madry-at"}, "remove recipe"),
        ({"arch": "mnist-c", "dataset": "mnist", "weights": "w.safetensors", "recipe": "madry-at"},
         "is not trained: remove 'recipe'"),
    ],
)
def test_settings_a_classifier_would_ignore_are_refused(
    tmp_path: Path, classifier: dict[str, object], expected: str
) -> None:
    assert expected in problems(edit(classifiers__C=classifier), tmp_path)


def test_a_classifier_listed_twice_in_a_pool_is_refused(tmp_path: Path) -> None:
    raw = edit(experiments=[{"kind": "ensemble-size", "defenses": ["aaa"], "pool": ["A", "C", "A"],
                             "sizes": [2], "draws": 3, "targets": ["C"]}])
    assert "experiments[0].pool: A listed more than once" in problems(raw, tmp_path)


def test_a_timm_tag_that_does_not_exist_is_a_validation_error(tmp_path: Path) -> None:
    raw = edit(classifiers__C={"source": "timm:resnet18.no_such_tag", "dataset": "mnist"})
    assert "classifiers.C.source" in problems(raw, tmp_path)


def weights_file(tmp_path: Path, with_normalization: bool) -> str:
    """mnist-c weights as a plain network checkpoint, or as the classifier artifact Frontline writes (which
    holds the mean/std buffers in front of the network)."""
    model = build_classifier("mnist-c", 10, (0.5,), (0.25,))
    state = model.state_dict() if with_normalization else model.net.state_dict()
    path = tmp_path / ("artifact.safetensors" if with_normalization else "plain.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path.name


def accepts(raw: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    validate_matrix(load_matrix(path), str(path), tmp_path, tmp_path)


def test_weights_that_do_not_record_their_normalization_need_it_stated(tmp_path: Path) -> None:
    plain = {"arch": "mnist-c", "dataset": "mnist", "weights": weights_file(tmp_path, False)}
    msg = problems(edit(classifiers__C=plain), tmp_path)
    assert "classifiers.C.normalization: classifier 'C' is loaded from weights that do not record" in msg
    assert "normalization: {mean: [...], std: [...]}" in msg and "normalization: none" in msg
    accepts(edit(classifiers__C={**plain, "normalization": "none"}), tmp_path)


def test_weights_that_record_their_normalization_need_none_stated(tmp_path: Path) -> None:
    artifact = {"arch": "mnist-c", "dataset": "mnist", "weights": weights_file(tmp_path, True)}
    accepts(edit(classifiers__C=artifact), tmp_path)


def test_unreadable_weights_without_a_stated_normalization_are_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    broken = {"arch": "mnist-c", "dataset": "mnist", "weights": "broken.safetensors"}
    msg = problems(edit(classifiers__C=broken), tmp_path)
    assert "classifiers.C.weights: weights file" in msg and "not a readable safetensors file" in msg


def weights_only_mlp(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, num_classes))


if "test-weights-only" not in CLASSIFIERS:
    register_classifier("test-weights-only", input_shape=(1, 28, 28), datasets=("mnist",))(weights_only_mlp)


def test_an_architecture_without_a_recipe_is_loaded_from_weights_never_trained(tmp_path: Path) -> None:
    msg = problems(edit(classifiers__C={"arch": "test-weights-only", "dataset": "mnist"}), tmp_path)
    assert "classifiers.C: classifier 'C' cannot be trained" in msg
    assert "architecture 'test-weights-only' has no training recipe" in msg and "give weights: FILE" in msg
    path = tmp_path / "mlp.safetensors"
    save_file(weights_only_mlp(10).state_dict(), path)
    accepts(edit(classifiers__C={"arch": "test-weights-only", "dataset": "mnist", "weights": path.name,
                                 "normalization": "none"}), tmp_path)


def standard(**evaluation: Any) -> dict[str, Any]:
    """BASE without its attacks: block, so it runs the standard protocol."""
    raw = edit(evaluation=evaluation)
    del raw["attacks"]
    return raw


def test_the_standard_protocol_needs_no_attacks(tmp_path: Path) -> None:
    accepts(standard(), tmp_path)
    accepts(standard(protocol="standard@1"), tmp_path)


def test_standard_protocol_with_an_attack_list_is_refused_with_the_fix(tmp_path: Path) -> None:
    msg = problems(edit(evaluation={"protocol": "standard"}), tmp_path)
    assert "attacks: evaluation.protocol: standard runs the standard attack set" in msg
    assert "remove them to run the standard protocol, or set evaluation.protocol: custom" in msg


def test_standard_protocol_with_an_experiment_naming_attacks_is_refused(tmp_path: Path) -> None:
    raw = standard()
    raw["experiments"][0]["attacks"] = ["pgd"]
    msg = problems(raw, tmp_path)
    assert "experiments[0].attacks: the matrix runs the standard protocol" in msg
    assert "unknown attack" not in msg  # one problem, said once


def test_custom_protocol_without_attacks_is_refused(tmp_path: Path) -> None:
    assert "evaluation.protocol: custom runs the matrix's own attacks, but it names none" in problems(
        standard(protocol="custom"), tmp_path
    )


@pytest.mark.parametrize(
    "cascade, expected",
    [
        (["pgd", "pdg"], "evaluation.cascade[1]: unknown attack 'pdg'"),
        (["pgd", "pgd"], "evaluation.cascade[1]: attack 'pgd' is already in the cascade"),
    ],
)
def test_a_cascade_names_each_listed_attack_once(tmp_path: Path, cascade: list[str], expected: str) -> None:
    assert expected in problems(edit(evaluation={"cascade": cascade}), tmp_path)


def test_a_cascade_under_the_standard_protocol_is_refused(tmp_path: Path) -> None:
    msg = problems(standard(cascade=["pgd"]), tmp_path)
    assert "evaluation.cascade: the standard protocol cascades its own attacks in its own order" in msg


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, "a U-Net of depth 4 cannot take images of shape (1, 28, 28)"),
        ({"depth": 2, "guide_layers": ["net.1", "net.10"]}, "guide layer 'net.10' is not a module"),
        ({"depth": 2}, "the guide has no ResNet stages"),
    ],
)
def test_what_only_the_defense_can_judge_is_checked_on_untrained_guides(
    tmp_path: Path, params: dict[str, Any], expected: str
) -> None:
    """``Defense.check`` runs on guides built from their architectures, without weights (A is trained)."""
    msg = problems(edit(defenses__aaa={"kind": "robustifier", "params": {"scale": 1, **params}}), tmp_path)
    assert f"experiments[0].defenses[0]: defense 'aaa' (robustifier), guides A: {expected}" in msg


def test_a_named_recipe_validates_the_training_parameters(tmp_path: Path) -> None:
    accepts(edit(classifiers__A={"arch": "mnist-a", "dataset": "mnist", "recipe": "madry-at",
                                 "train": {"epochs": 1, "eps": 0.3, "attack_steps": 40, "attack_step": 0.01,
                                           "crop_padding": 0, "flip": False}}), tmp_path)
    msg = problems(edit(classifiers__A={"arch": "mnist-a", "dataset": "mnist", "recipe": "madry-at",
                                        "train": {"epochs": 1, "attack_stpes": 40}}), tmp_path)
    assert "classifiers.A.train.attack_stpes: unknown key" in msg and "'attack_steps'" in msg
    msg = problems(edit(classifiers__A={"arch": "mnist-a", "dataset": "mnist", "recipe": "madry_at"}),
                   tmp_path)
    assert "classifiers.A.recipe: unknown training recipe 'madry_at'; did you mean 'madry-at'" in msg


@pytest.mark.parametrize(
    "budget, expected",
    [
        ({"autoatack": {"n_iter": 1}}, "standard_budget.autoatack: unknown standard-protocol attack"),
        ({"autoattack": {"attacks": ["apgd-dlr"]}}, "the standard version runs apgd-ce, apgd-t, fab-t, squ"),
        ({"pgd-ce": {"stpes": 10}}, "evaluation.standard_budget.pgd-ce.stpes: unknown key"),
    ],
)
def test_a_standard_budget_names_protocol_attacks_and_their_parameters(
    tmp_path: Path, budget: dict[str, Any], expected: str
) -> None:
    assert expected in problems(standard(standard_budget=budget), tmp_path)


def test_a_standard_budget_under_a_custom_attack_set_is_refused(tmp_path: Path) -> None:
    msg = problems(edit(evaluation={"standard_budget": {"autoattack": {"n_iter": 10}}}), tmp_path)
    assert "evaluation.standard_budget: changes the standard protocol's budgets" in msg


def test_a_reduced_standard_budget_is_accepted(tmp_path: Path) -> None:
    budget = {"autoattack": {"attacks": ["apgd-ce", "apgd-t"], "n_iter": 50}}
    accepts(standard(standard_budget=budget), tmp_path)


JAT = {"kind": "jat", "params": {"depth": 2}}


@pytest.mark.parametrize(
    "guide, given",
    [
        ({"arch": "mnist-c", "dataset": "mnist", "weights": "w.safetensors"}, "weights: w.safetensors"),
        ({"source": "torchvision:resnet18", "dataset": "mnist"}, "source: torchvision:resnet18"),
    ],
)
def test_jat_given_a_pre_trained_guide_is_refused_naming_the_guide(
    tmp_path: Path, guide: dict[str, Any], given: str
) -> None:
    save_file(
        {k: v.contiguous() for k, v in build_classifier("mnist-c", 10, (0.1,), (0.3,)).state_dict().items()},
        tmp_path / "w.safetensors",
    )
    raw = edit(
        classifiers__C=guide,
        defenses__jat=JAT,
        experiments=[{"kind": "native", "defenses": ["jat"], "guides": ["A", "C"]}],
    )
    msg = problems(raw, tmp_path)
    assert (
        "experiments[0].defenses[0]: defense 'jat' (jat) trains its guide classifiers from scratch, jointly "
        f"with its front-end, but guide 'C' is pre-trained ({given})"
    ) in msg
    assert "guide 'A'" not in msg, "A is built from its architecture, as jat needs"


@pytest.mark.parametrize(
    "other",
    [
        {"arch": "fashion-cnn", "dataset": "fashion-mnist"},  # the same input shape, another dataset
        {"arch": "resnet20", "dataset": "cifar10"},  # another input shape too
    ],
)
def test_jat_guides_of_different_datasets_or_shapes_in_one_ensemble_are_refused(
    tmp_path: Path, other: dict[str, Any]
) -> None:
    raw = edit(
        classifiers__O=other,
        defenses__jat=JAT,
        experiments=[{"kind": "native", "defenses": ["jat"], "guides": ["A", "O"]}],
    )
    expected = sorted([other["dataset"], "mnist"])
    msg = problems(raw, tmp_path)
    assert f"experiments[0]: all guides of an experiment must share one dataset, got {expected}" in msg


def test_jat_with_guides_built_from_their_architectures_is_accepted(tmp_path: Path) -> None:
    raw = edit(
        defenses__jat=JAT,
        experiments=[
            {"kind": "native", "defenses": ["jat", "none"], "guides": ["A", "C"]},
            {"kind": "cross-model", "defenses": ["jat"], "guides": ["A"], "targets": ["C"]},
        ],
    )
    accepts(raw, tmp_path)


def paper(*tables: dict[str, Any]) -> dict[str, Any]:
    return {"source": "Vaishnavi et al. 2022", "tables": list(tables)}


#: AAA and the undefended none on A (native) and C (cross-model), robust and clean, as Vaishnavi et al.'s
#: Table 2 lays them out: defenses down, targets across.
TABLE = {
    "title": "Table 2",
    "rows": [{"label": "AAA", "defense": "aaa"}, {"label": "none", "defense": "none"}],
    "columns": [{"label": "A", "target": "A"}, {"label": "C", "target": "C"},
                {"label": "A clean", "target": "A", "metric": "clean"}],
    "numbers": [[60.1, 40.0, 98.0], [0.0, None, 99.1]],
}


def test_a_paper_block_naming_evaluated_cells_is_accepted(tmp_path: Path) -> None:
    accepts(edit(paper=paper(TABLE)), tmp_path)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"rows": [{"label": "AAA", "defense": "aab"}, TABLE["rows"][1]]},
         "paper.tables[0].rows[0].defense: unknown defense 'aab'"),
        ({"columns": [{"label": "A", "target": "D"}, *TABLE["columns"][1:]]},
         "paper.tables[0].columns[0].target: unknown classifier 'D'"),
        ({"threat": "l2"}, "paper.tables[0].threat: unknown threat 'l2'"),
        ({"eps": 0.2},
         "paper.tables[0].numbers[0][0]: row 'AAA', column 'A': eps 0.2 is not a radius of threat 'linf' "
         "(0.3)"),
        ({"numbers": [[60.1, 40.0, 98.0], [0.0, 1.0, 99.1]]},
         "paper.tables[0].numbers[1][1]: row 'none', column 'C': no experiment evaluates defense 'none' on "
         "target 'C' at linf eps 0.3"),
        ({"rows": [{"label": "none", "defense": "none", "guides": ["A"]}], "numbers": [[0.0, None, 99.0]]},
         "defense 'none' trains no front-end, so it has no guide set; remove guides"),
        ({"columns": [{"label": "r", "target": "A", "radius": 0.5}, *TABLE["columns"][1:]]},
         "paper.tables[0].columns[0]: a radius or sigma names a certified number, but the matrix has no "
         "certify block"),
        ({"columns": [{"label": "A", "target": "A", "attack": "pgd", "metric": "clean"},
                      *TABLE["columns"][1:]]},
         "attack is for robust numbers, not clean ones"),
        ({"rows": [{"label": "AAA", "defense": "aaa", "m": 2}, TABLE["rows"][1]]},
         "paper.tables[0].rows[0].m: no ensemble-size experiment of the matrix has size 2 (sizes: [])"),
    ],
)
def test_a_paper_entry_that_names_no_cell_of_the_matrix_is_refused(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    assert expected in problems(edit(paper=paper(TABLE | change)), tmp_path)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"numbers": [[60.1, 40.0]]}, "numbers has 1 row(s) but the table 2"),
        ({"numbers": [[60.1, 40.0], [0.0, None]]},
         "numbers[0] (row 'AAA') has 2 entries but the table 3 columns"),
        ({"numbers": [[60.1, 40.0, 980.0], [0.0, None, 99.1]]}, "accuracies are percentages in [0, 100]"),
        ({"rows": [{"label": "AAA", "defense": "aaa", "target": "A"}, TABLE["rows"][1]]},
         "row 'AAA' and column 'A' both give target"),
    ],
)
def test_a_paper_table_of_the_wrong_shape_is_refused_when_read(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    assert expected in problems(edit(paper=paper(TABLE | change)), tmp_path)


def test_a_paper_threat_stands_for_its_norm_and_radius(tmp_path: Path) -> None:
    """A cell at linf 0.3 planned under the threat "linf" is the cell a paper's "sweep" column names."""
    sweep = {"norm": "linf", "epsilons": [0.1, 0.3]}
    raw = edit(threats__sweep=sweep, paper=paper(TABLE | {"threat": "sweep"}))
    for exp in raw["experiments"]:
        exp["threats"] = ["linf"]  # no cell is planned under "sweep", nor at 0.1
    assert "give eps: threat 'sweep' has several (0.1, 0.3)" in problems(raw, tmp_path)
    raw["paper"]["tables"][0]["eps"] = 0.3
    accepts(raw, tmp_path)
    raw["paper"]["tables"][0]["eps"] = 0.1
    assert "no experiment evaluates defense 'aaa' on target 'A' at linf eps 0.1" in problems(raw, tmp_path)


def test_an_ensemble_size_entry_names_its_size(tmp_path: Path) -> None:
    table = {"title": "Fig. 8", "defense": "aaa", "target": "C", "rows": [{"label": "m = 2", "m": 2}],
             "columns": [{"label": "robust"}], "numbers": [[40.0]]}
    raw = edit(classifiers__B={"arch": "mnist-b", "dataset": "mnist"}, paper=paper(table))
    raw["experiments"].append(
        {"kind": "ensemble-size", "defenses": ["aaa"], "pool": ["A", "B"], "sizes": [1, 2], "targets": ["C"]}
    )
    accepts(raw, tmp_path)
    # Without m an entry names the other experiments' cells: aaa [A] on C, not the pool's draws.
    del raw["paper"]["tables"][0]["rows"][0]["m"]
    accepts(raw, tmp_path)
    raw["paper"]["tables"][0]["rows"][0]["m"] = 3
    assert "rows[0].m: no ensemble-size experiment of the matrix has size 3 (sizes: [1, 2])" in problems(
        raw, tmp_path
    )


def test_an_ambiguous_paper_entry_asks_for_guides(tmp_path: Path) -> None:
    raw = edit(paper=paper(TABLE))
    raw["experiments"].append({"kind": "cross-model", "defenses": ["aaa"], "guides": ["C"], "targets": ["A"]})
    expected = "defense 'aaa' meets target 'A' with several guide sets (A, C); give guides"
    assert expected in problems(raw, tmp_path)
    raw["paper"]["tables"][0]["rows"][0]["guides"] = ["A"]
    accepts(raw, tmp_path)


def test_a_sigma_picks_a_smoothed_cell_but_not_one_attacks_number(tmp_path: Path) -> None:
    """With smoothing planned once per sigma, sigma is what tells a clean or robust entry's cells apart
    (Norouzzadeh et al.'s denoised-smoothing numbers at sigma 0.25); one attack's rows do not record it."""
    table = {"title": "S.2", "defense": "smooth", "target": "A", "sigma": 0.25,
             "rows": [{"label": "sigma 0.25"}],
             "columns": [{"label": "clean", "metric": "clean"}, {"label": "robust"}],
             "numbers": [[72.0, 32.0]]}
    raw = edit(defenses={"smooth": {"kind": "smoothing"}},
               attacks={"spgd": {"kind": "smoothed-pgd", "params": {"steps": 10}}},
               certify={"sigmas": [0.25, 0.5], "n": 100, "n_images": 2},
               experiments=[{"kind": "native", "defenses": ["smooth"], "guides": ["A"]}], paper=paper(table))
    accepts(raw, tmp_path)
    raw["paper"]["tables"][0]["columns"][1]["attack"] = "spgd"
    expected = "sigma picks a smoothed pipeline's worst-case cell, not one attack's number; remove attack"
    assert expected in problems(raw, tmp_path)


def front_end_file(tmp_path: Path, width: int, name: str = "sd.safetensors") -> str:
    """A static-denoiser front-end of ``width`` for MNIST, saved as the artifact Frontline writes."""
    from bench.api import DEFENSES

    defense = DEFENSES.get("static-denoiser")
    frontend = defense().build(defense.Params.model_validate({"width": width}), (1, 28, 28))
    save_file({k: v.contiguous() for k, v in frontend.state_dict().items()}, tmp_path / name)
    return name


def with_defenses(**defenses: dict[str, Any]) -> dict[str, Any]:
    """The base matrix with these defense entries added to its native experiment (guide A)."""
    raw = edit()
    raw["defenses"].update(defenses)
    raw["experiments"][0]["defenses"] += list(defenses)
    return raw


SD = {"kind": "static-denoiser", "params": {"width": 2}}


def test_a_front_end_loaded_from_weights_that_fit_its_architecture_is_accepted(tmp_path: Path) -> None:
    accepts(with_defenses(sd={**SD, "weights": front_end_file(tmp_path, 2)}), tmp_path)


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"weights": "missing.safetensors"}, "defenses.sd.weights: weights file"),
        ({"weights": "wide.safetensors"}, "shape mismatch (checkpoint vs model)"),
        ({"weights": "wide.safetensors", "n_train": 100}, "from weights is not trained: remove n_train"),
        ({"weights": "wide.safetensors", "init_from": "aaa"}, "is not trained: remove init_from"),
        ({"init_guides": ["A"]}, "init_guides names the guides of the init_from front-end; give init_from"),
    ],
)
def test_a_weights_file_missing_or_unfit_or_with_training_settings_is_refused(
    tmp_path: Path, entry: dict[str, Any], expected: str
) -> None:
    front_end_file(tmp_path, 3, "wide.safetensors")
    msg = problems(with_defenses(sd={**SD, **entry}), tmp_path)
    assert expected in msg
    if "missing" in str(entry.get("weights")):
        assert "missing.safetensors' does not exist" in msg


def test_a_defense_that_trains_its_classifiers_takes_no_weights_file(tmp_path: Path) -> None:
    msg = problems(with_defenses(j={"kind": "jat", "weights": front_end_file(tmp_path, 2)}), tmp_path)
    assert "defenses.j.weights: defense 'j' (jat) trains its classifiers jointly" in msg


@pytest.mark.parametrize(
    "defenses, expected",
    [
        ({"tuned": {**SD, "init_from": "bsae"}}, "defenses.tuned.init_from: unknown defense 'bsae'"),
        ({"tuned": {**SD, "init_from": "base", "init_guides": ["Z"]}}, "defenses.tuned.init_guides[0]"),
        (
            {"x": {**SD, "init_from": "y"}, "y": {**SD, "init_from": "x"}},
            "defenses.x.init_from: init_from goes round in a circle (x -> y -> x)",
        ),
        ({"tuned": {**SD, "init_from": "tuned"}}, "goes round in a circle (tuned -> tuned)"),
        (
            {"tuned": {"kind": "static-denoiser", "params": {"width": 4}, "init_from": "base"}},
            "defenses.tuned.init_from: defense 'tuned' (static-denoiser) cannot start from defense 'base' "
            "(static-denoiser), whose architecture differs",
        ),
        ({"tuned": {**SD, "init_from": "aaa"}}, "cannot start from defense 'aaa' (aaa)"),
        ({"n": {"kind": "none", "init_from": "base"}}, "defense 'n' (none) trains nothing"),
    ],
)
def test_an_init_that_is_unknown_circular_or_of_another_architecture_is_refused(
    tmp_path: Path, defenses: dict[str, Any], expected: str
) -> None:
    msg = problems(with_defenses(base=SD, **defenses), tmp_path)
    assert expected in msg
    if "bsae" in str(defenses):
        assert "did you mean 'base'" in msg


def test_an_init_of_the_same_architecture_is_accepted_from_a_trained_or_loaded_front_end(
    tmp_path: Path,
) -> None:
    accepts(with_defenses(base=SD, tuned={**SD, "params": {"width": 2, "epochs": 1}, "init_from": "base"}),
            tmp_path)
    loaded = {**SD, "weights": front_end_file(tmp_path, 2)}
    accepts(with_defenses(base=loaded, tuned={**SD, "init_from": "base", "init_guides": ["C"]}), tmp_path)


def test_validation_asks_the_defense_whether_it_needs_or_accepts_its_init(tmp_path: Path) -> None:
    small = {"depth": 3, "width": 4}
    mse = {"kind": "denoised-smoothing", "params": {**small, "objective": "mse"}}
    tuned = {"kind": "denoised-smoothing", "params": {**small, "objective": "stab+mse"}}
    msg = problems(with_defenses(tuned=tuned), tmp_path)
    assert "defenses.tuned: defense 'tuned' (denoised-smoothing): objective 'stab+mse' fine-tunes" in msg
    stab = {"kind": "denoised-smoothing", "params": {**small, "objective": "stab"}}
    msg = problems(with_defenses(stab=stab, tuned={**tuned, "init_from": "stab"}), tmp_path)
    assert "defenses.tuned.init_from: defense 'tuned' (denoised-smoothing)" in msg
    accepts(with_defenses(mse=mse, tuned={**tuned, "init_from": "mse"}), tmp_path)
