from __future__ import annotations

import pytest

from bench.api import Registry
from bench.errors import UnknownNameError


def test_register_and_lookup() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1, "the first\nmore text")
    assert reg.get("alpha") == 1
    assert reg.entry("alpha").description == "the first"
    assert "alpha" in reg and "beta" not in reg


def test_unknown_name_suggests_closest() -> None:
    reg: Registry[int] = Registry("defense")
    reg.add("robustifier", 1)
    reg.add("aaa", 2)
    with pytest.raises(UnknownNameError) as err:
        reg.get("robustifer")
    assert "did you mean 'robustifier'" in str(err.value)
    assert "valid: aaa, robustifier" in str(err.value)


def test_double_registration_is_an_error() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("x", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("x", 2)


def test_builtins_register_through_their_entry_points() -> None:
    from bench.api import ATTACKS, CLASSIFIERS, DATASETS, DEFENSES

    assert {"mnist-a", "mnist-b", "mnist-c", "resnet20"} <= set(CLASSIFIERS.names())
    assert {"none", "aaa"} <= set(DEFENSES.names())
    assert {"pgd", "fgsm"} <= set(ATTACKS.names())
    assert {"mnist", "fashion-mnist", "cifar10", "cifar100"} <= set(DATASETS.names())


def test_entry_point_plugins_are_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party package registers through an entry-point group without editing this repository."""
    import bench.api.registry as registry_module

    reg: Registry[int] = Registry("thing")

    class FakeEntryPoint:
        def load(self) -> None:
            reg.add("from-plugin", 42, "registered by an installed package")

    monkeypatch.setattr(registry_module, "_plugins_loaded", False)
    monkeypatch.setattr(
        registry_module,
        "entry_points",
        lambda group: [FakeEntryPoint()] if group == "frontline.defenses" else [],
    )
    assert reg.get("from-plugin") == 42


def test_a_plugin_that_fails_to_import_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.api.registry as registry_module
    from bench.errors import BenchError

    class Broken:
        name, group, value = "broken", "frontline.defenses", "broken_pkg"

        def load(self) -> None:
            raise ImportError("No module named 'broken_pkg'")

    monkeypatch.setattr(registry_module, "_plugins_loaded", False)
    monkeypatch.setattr(
        registry_module, "entry_points", lambda group: [Broken()] if "defenses" in group else []
    )
    with pytest.raises(BenchError, match="plug-in 'broken'.*broken_pkg"):
        Registry[int]("thing").names()
