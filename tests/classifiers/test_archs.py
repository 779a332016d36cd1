"""Every registered architecture builds, runs and backpropagates at the shape its registration declares."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import classifiers  # noqa: F401  (registers the built-in architectures)
from bench.api import CLASSIFIERS
from classifiers.archs.madry_wrn import per_image_standardization
from classifiers.archs.resnet_he import PadShortcut

CIFAR_ARCHS = sorted(e.name for e in CLASSIFIERS if e.obj.input_shape == (3, 32, 32))
EXPECTED_CIFAR = {
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet110-cohen",
    "wrn28_10",
    "vgg16",
    "vgg19",
    "mobilenetv2",
    "densenet121",
    "squeezenet",
    "googlenet",
}
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_all_cifar_architectures_are_registered() -> None:
    assert set(CIFAR_ARCHS) >= EXPECTED_CIFAR
    for name in EXPECTED_CIFAR:
        spec = CLASSIFIERS.get(name)
        assert spec.datasets == ("cifar10", "cifar100")
        assert spec.recipe == "cifar"
        assert spec.num_classes is None
        assert spec.description


@pytest.mark.parametrize("name", CIFAR_ARCHS)
def test_cifar_architecture_shapes_and_input_gradient(name: str) -> None:
    spec = CLASSIFIERS.get(name)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    net = spec.factory(10).train()
    logits = net(x)
    assert logits.shape == (2, 10)
    # Attacks differentiate with respect to the input: the graph must reach it with finite values.
    (grad,) = torch.autograd.grad(logits.logsumexp(1).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        assert spec.factory(100).eval()(x).shape == (2, 100)


def test_fashion_cnn_shape() -> None:
    spec = CLASSIFIERS.get("fashion-cnn")
    assert spec.input_shape == (1, 28, 28)
    assert spec.datasets == ("fashion-mnist", "mnist")
    assert spec.recipe == "mnist"
    with torch.no_grad():
        assert spec.factory(10).eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "millions"),
    [
        ("resnet20", 0.27),
        ("resnet32", 0.46),
        ("resnet44", 0.66),
        ("resnet56", 0.85),
        ("resnet110", 1.73),
    ],
)
def test_he_resnet_parameter_counts(name: str, millions: float) -> None:
    """The counts of He et al. / akamaster's table; option-A shortcuts add none."""
    n = sum(p.numel() for p in CLASSIFIERS.get(name).factory(10).parameters())
    assert round(n / 1e6, 2) == millions


def test_he_resnet_uses_akamaster_names() -> None:
    expected = {"conv1.weight", "linear.weight", "linear.bias"}
    expected |= {f"bn1.{s}" for s in BN_ENTRIES}
    for stage in (1, 2, 3):
        for block in range(3):
            for i in (1, 2):
                expected.add(f"layer{stage}.{block}.conv{i}.weight")
                expected |= {f"layer{stage}.{block}.bn{i}.{s}" for s in BN_ENTRIES}
    assert set(CLASSIFIERS.get("resnet20").factory(10).state_dict()) == expected


def test_cohen_resnet110_has_two_projection_shortcuts_more_than_option_a() -> None:
    """Option B's 1x1 convolutions and BatchNorms (16->32, 32->64) are all it adds to resnet110."""

    def count(name: str) -> int:
        return sum(p.numel() for p in CLASSIFIERS.get(name).factory(10).parameters())

    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count("resnet110-cohen") == count("resnet110") + projections == 1_730_714


def test_cohen_resnet_uses_bearpaw_names() -> None:
    """The names of locuslab/smoothing's code/archs/cifar_resnet.py, so their checkpoints load key for key."""
    expected = {"conv1.weight", "fc.weight", "fc.bias"}
    expected |= {f"bn1.{s}" for s in BN_ENTRIES}
    for stage in (1, 2, 3):
        for block in range(18):
            for i in (1, 2):
                expected.add(f"layer{stage}.{block}.conv{i}.weight")
                expected |= {f"layer{stage}.{block}.bn{i}.{s}" for s in BN_ENTRIES}
        if stage > 1:
            expected.add(f"layer{stage}.0.downsample.0.weight")
            expected |= {f"layer{stage}.0.downsample.1.{s}" for s in BN_ENTRIES}
    state = CLASSIFIERS.get("resnet110-cohen").factory(10).state_dict()
    assert set(state) == expected
    assert state["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert state["layer3.0.downsample.0.weight"].shape == (64, 32, 1, 1)


def test_option_a_shortcut_subsamples_and_zero_pads_channels() -> None:
    x = torch.randn(2, 16, 32, 32)
    out = PadShortcut(16)(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out, F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8)))


@pytest.mark.parametrize(
    ("name", "parameters", "shape"),
    [
        ("madry-wrn34-10", 45_901_914, (3, 32, 32)),
        ("cifar-f", 261_834, (3, 32, 32)),
        ("fashion-zheng", 3_306_474, (1, 28, 28)),
    ],
)
def test_vaishnavi_classifiers_parameter_counts_and_shapes(
    name: str, parameters: int, shape: tuple[int, int, int]
) -> None:
    """The counts follow from the layers their sources give (see each module's docstring)."""
    spec = CLASSIFIERS.get(name)
    net = spec.factory(10)
    assert spec.input_shape == shape
    assert sum(p.numel() for p in net.parameters()) == parameters
    with torch.no_grad():
        assert net.eval()(torch.rand(2, *shape)).shape == (2, 10)


def test_madry_wrn_has_five_units_per_group_and_no_projection_shortcuts() -> None:
    """What sets it apart from the zoo's wrn28_10: 31 convolutions, all 3x3 (a 1x1 projection would show)."""
    net = CLASSIFIERS.get("madry-wrn34-10").factory(10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 3 * 5 * 2
    assert {m.kernel_size for m in convs} == {(3, 3)}


def test_per_image_standardization_matches_tensorflow() -> None:
    x = torch.rand(3, 3, 32, 32)
    out = per_image_standardization(x)
    flat = out.flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(flat.std(1, unbiased=False), torch.ones(3), atol=1e-4)
    # A constant image is divided by the 1/sqrt(N) floor, not by (nearly) zero: float error in its mean stays
    # within 1/sqrt(N) of it instead of being blown up.
    constant = per_image_standardization(torch.full((1, 3, 32, 32), 0.4))
    assert bool(constant.abs().max() < 1e-4)
