"""Bad matrix files stop before any work with a message naming the file, the key path and the fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.config import load_matrix, parse_matrix
from bench.errors import ConfigError
from bench.validate import validate_matrix

BASE: dict[str, Any] = {
    "name": "t",
    "classifiers": {
        "A": {"arch": "mnist-a", "dataset": "mnist", "train": {"epochs": 1}},
        "C": {"arch": "mnist-c", "dataset": "mnist"},
    },
    "defenses": {"aaa": {"kind": "aaa"}, "none": {"kind": "none"}},
    "threats": {"linf": {"norm": "linf", "epsilons": [0.3]}},
    "attacks": {"pgd": {"kind": "pgd", "params": {"steps": 10}}},
    "experiments": [
        {"kind": "native", "defenses": ["aaa", "none"], "guides": ["A"]},
        {"kind": "cross-model", "defenses": ["aaa"], "guides": ["A"], "targets": ["C"]},
    ],
}


def problems(raw: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        validate_matrix(load_matrix(path), str(path), tmp_path, tmp_path)
    return str(err.value)


def edit(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value
    return raw


def test_valid_matrix_passes(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(BASE))
    validate_matrix(load_matrix(path), str(path), tmp_path, tmp_path)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nclassifiers: {A: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: malformed YAML at line \d+"):
        load_matrix(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the matrix file"):
        load_matrix(tmp_path / "nope.yaml")


def matrix_text(classifiers: str) -> str:
    """BASE as YAML with a hand-written ``classifiers`` block, the one part PyYAML would otherwise rewrite."""
    rest = {k: v for k, v in BASE.items() if k != "classifiers"}
    return f"classifiers:\n{classifiers}{yaml.safe_dump(rest)}"


def test_duplicate_classifier_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(
        matrix_text(
            "  A: {arch: mnist-a, dataset: mnist}\n"
            "  C: {arch: mnist-c, dataset: mnist}\n"
            "  A: {arch: mnist-c, dataset: mnist}\n"
        )
    )
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    assert str(err.value) == (
        f"{path}: malformed YAML at line 4, column 3: duplicate key 'A' (first given at line 2)"
    )


def test_duplicate_keys_on_one_line_and_at_top_level(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(matrix_text("  A: {arch: mnist-a, dataset: mnist, dataset: fashion-mnist}\n"))
    with pytest.raises(
        ConfigError, match=r"line 2, column \d+: duplicate key 'dataset' \(first given at line 2\)"
    ):
        load_matrix(path)
    path.write_text(f"name: a\n{yaml.safe_dump(BASE)}")
    with pytest.raises(ConfigError, match=r"dup\.yaml: .* duplicate key 'name' \(first given at line 1\)"):
        load_matrix(path)


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    """``<<: *anchor`` then a key of the mapping's own is YAML's way to override, not a duplicate."""
    path = tmp_path / "m.yaml"
    path.write_text(
        matrix_text("  A: &a {arch: mnist-a, dataset: mnist, seed: 3}\n  C:\n    <<: *a\n    arch: mnist-c\n")
    )
    c = load_matrix(path).classifiers["C"]
    assert (c.arch, c.dataset, c.seed) == ("mnist-c", "mnist", 3)


def test_unknown_key_has_its_path() -> None:
    raw = edit(defenses__aaa__parms={"epochs": 1})
    with pytest.raises(ConfigError, match=r"m\.yaml: defenses\.aaa\.parms: unknown key"):
        parse_matrix(raw, "m.yaml")


def test_missing_required_key() -> None:
    raw = copy.deepcopy(BASE)
    del raw["classifiers"]["A"]["dataset"]
    with pytest.raises(ConfigError, match=r"classifiers\.A\.dataset: required key is missing"):
        parse_matrix(raw, "m.yaml")
    del raw["classifiers"]["C"]["arch"]
    with pytest.raises(ConfigError, match=r"classifiers\.C: .*give arch"):
        parse_matrix(raw, "m.yaml")


def test_unknown_registry_names_suggest_closest(tmp_path: Path) -> None:
    msg = problems(edit(classifiers__A__arch="mnist-aa", defenses__aaa__kind="aa"), tmp_path)
    assert "classifiers.A.arch: unknown classifier 'mnist-aa'; did you mean 'mnist-a'" in msg
    assert "defenses.aaa.kind: unknown defense 'aa'; did you mean 'aaa'" in msg
    assert "the matrix has 2 problems" in msg


def test_unknown_experiment_reference(tmp_path: Path) -> None:
    msg = problems(edit(**{"experiments__1__targets": ["D"]}), tmp_path)
    assert "experiments[1].targets[0]: unknown classifier 'D'" in msg and "valid: A, C" in msg


@pytest.mark.parametrize("eps, expected", [(1.5, "exceeds 1"), (-0.1, "must be > 0"), (0, "must be > 0")])
def test_epsilon_out_of_range(tmp_path: Path, eps: float, expected: str) -> None:
    msg = problems(edit(threats__linf__epsilons=[eps]), tmp_path)
    assert "threats.linf.epsilons[0]" in msg and expected in msg


def test_fraction_epsilons_are_parsed() -> None:
    m = parse_matrix(edit(threats__linf__epsilons=["8/255", 0.1]), "m.yaml")
    assert m.threats["linf"].epsilons == [pytest.approx(8 / 255), 0.1]
    with pytest.raises(ConfigError, match="fraction like 8/255"):
        parse_matrix(edit(threats__linf__epsilons=["8/O"]), "m.yaml")


def test_classifier_dataset_mismatch(tmp_path: Path) -> None:
    msg = problems(edit(classifiers__C__arch="resnet20"), tmp_path)
    assert "classifiers.C: classifier architecture 'resnet20' takes inputs of shape (3, 32, 32)" in msg


def test_class_count_mismatch(tmp_path: Path) -> None:
    from bench.api.classifier import CLASSIFIERS, ArchSpec

    CLASSIFIERS.add(
        "test-ten-class",
        ArchSpec(
            "test-ten-class",
            lambda n: None,
            (3, 32, 32),
            ("cifar10",),  # type: ignore[arg-type,return-value]
            "cifar",
            "fixed ten-way head",
            num_classes=10,
        ),
    )
    raw = edit(classifiers__C__arch="test-ten-class", classifiers__C__dataset="cifar100")
    raw["experiments"] = [{"kind": "native", "defenses": ["none"], "guides": ["C"]}]
    msg = problems(raw, tmp_path)
    assert "has 10 classes but dataset 'cifar100' has 100" in msg


def test_bad_parameters_are_reported_at_their_path(tmp_path: Path) -> None:
    msg = problems(edit(attacks__pgd__params={"steps": 0}, defenses__aaa__params={"eps": -1}), tmp_path)
    assert "attacks.pgd.params.steps" in msg and "greater than or equal to 1" in msg
    assert "defenses.aaa.params.eps" in msg


def test_attack_norm_mismatch(tmp_path: Path) -> None:
    raw = edit(threats__linf__norm="l2", attacks__pgd__kind="pgd-cann", attacks__pgd__params={})
    assert "works in linf but threat 'linf' is l2" in problems(raw, tmp_path)


def test_cross_model_target_that_is_a_guide(tmp_path: Path) -> None:
    msg = problems(edit(**{"experiments__1__targets": ["A"]}), tmp_path)
    assert "['A'] are guides of this experiment" in msg


def test_cross_dataset_needs_another_dataset(tmp_path: Path) -> None:
    raw = copy.deepcopy(BASE)
    raw["experiments"] = [{"kind": "cross-dataset", "defenses": ["aaa"], "guides": ["A"], "targets": ["C"]}]
    assert "cross-dataset targets must use another dataset" in problems(raw, tmp_path)


def test_ensemble_sizes_within_pool(tmp_path: Path) -> None:
    raw = copy.deepcopy(BASE)
    raw["experiments"] = [
        {"kind": "ensemble-size", "defenses": ["aaa"], "pool": ["A"], "sizes": [1, 2], "targets": ["C"]}
    ]
    assert "experiments[0].sizes[1]: ensemble size must be between 1 and the pool size 1" in problems(
        raw, tmp_path
    )


def test_missing_weights_file(tmp_path: Path) -> None:
    raw = edit(classifiers__C__weights="{data_dir}/nope.safetensors")
    assert "classifiers.C.weights: weights file" in problems(raw, tmp_path)


def test_guides_xor_guide_sets() -> None:
    raw = edit(**{"experiments__0__guide_sets": [["A"]]})
    with pytest.raises(ConfigError, match="give either guides"):
        parse_matrix(raw, "m.yaml")


def test_guide_surrogate_needs_a_trainable_defense(tmp_path: Path) -> None:
    raw = copy.deepcopy(BASE)
    raw["attacks"]["transfer"] = {"kind": "transfer-pgd", "params": {"surrogate": "guide"}}
    msg = problems(raw, tmp_path)
    assert "experiments[0]: attack 'transfer' crafts on the front-end's guide, but defense 'none'" in msg
    assert "experiments[1]" not in msg, "aaa is trainable: its guide is a valid surrogate"


def without_attacks(**evaluation: Any) -> dict[str, Any]:
    raw = {k: v for k, v in copy.deepcopy(BASE).items() if k != "attacks"}
    return {**raw, "evaluation": evaluation} if evaluation else raw


@pytest.mark.parametrize(
    "raw, version",
    [
        (without_attacks(), 1),  # no attacks: block: the standard protocol
        (BASE, None),  # an attacks: block: a custom attack set, as every matrix written before the protocol
        (without_attacks(protocol="standard@1"), 1),
        (edit(evaluation={"protocol": "custom"}), None),
    ],
)
def test_the_protocol_defaults_to_standard_only_without_an_attacks_block(
    raw: dict[str, Any], version: int | None
) -> None:
    assert parse_matrix(raw, "m.yaml").standard_protocol == version


@pytest.mark.parametrize(
    "protocol, expected",
    [
        ("standard@7", "runs standard protocol version(s) standard@1, not 'standard@7'"),
        ("strong", "expected standard, standard@N or custom, got 'strong'"),
        ("standard@v1", "expected standard, standard@N or custom"),
    ],
)
def test_a_protocol_this_code_does_not_know_is_refused(protocol: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_matrix(without_attacks(protocol=protocol), "m.yaml")
    assert "m.yaml: evaluation.protocol:" in str(err.value) and expected in str(err.value)


def test_cumulative_radii_only_where_no_stored_key_depends_on_their_absence() -> None:
    assert parse_matrix(without_attacks(), "m.yaml").cumulative
    assert parse_matrix(edit(evaluation={"cascade": ["pgd"]}), "m.yaml").cumulative
    assert not parse_matrix(BASE, "m.yaml").cumulative
