"""Salman et al.'s denoisers: the sizes and parameter names of microsoft/denoised-smoothing's DnCNN,
DnCNN-wide and MemNet, so their published checkpoints load key for key, and the residual forms they
compute."""

from __future__ import annotations

import pytest
import torch

from defenses.denoisers import ARCHS, SIZES, DnCNN, MemNet, build_denoiser

pytestmark = pytest.mark.usefixtures("one_thread")

#: Parameter counts of their ``cifar_dncnn``, ``cifar_dncnn_wide`` and ``memnet`` (3 image channels), as
#: their code builds them. DnCNN's: a 3->64 conv with bias (1,792), 15 bias-free 64->64 convs (36,864 each)
#: with batch norms (128 each), a bias-free 64->3 conv (1,728).
REFERENCE_PARAMETERS = {"dncnn": 558_400, "dncnn-wide": 2_222_720, "memnet": 1_436_678}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_are_the_reference_implementations(arch: str) -> None:
    assert count(build_denoiser(arch, 3)) == REFERENCE_PARAMETERS[arch]


def test_dncnn_17_layers_counted_by_hand() -> None:
    assert count(build_denoiser("dncnn", 3)) == (3 * 64 * 9 + 64) + 15 * (64 * 64 * 9 + 2 * 64) + 64 * 3 * 9


def test_dncnn_state_dict_keys_are_their_sequential_layout() -> None:
    """One Sequential named ``dncnn``: conv (with bias), ReLU, then per middle layer conv, BN, ReLU, then the
    last conv; index i of the Sequential is key prefix ``dncnn.i``."""
    expected = ["dncnn.0.weight", "dncnn.0.bias"]
    for k in range(15):
        conv, bn = 2 + 3 * k, 3 + 3 * k
        expected.append(f"dncnn.{conv}.weight")
        expected += [f"dncnn.{bn}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
        expected.append(f"dncnn.{bn}.num_batches_tracked")
    expected.append("dncnn.47.weight")
    state = build_denoiser("dncnn-wide", 3).state_dict()
    assert list(state) == expected
    assert state["dncnn.0.weight"].shape == (128, 3, 3, 3)
    assert state["dncnn.47.weight"].shape == (3, 128, 3, 3)
    norm = DnCNN(3).dncnn[3]
    assert isinstance(norm, torch.nn.BatchNorm2d) and (norm.eps, norm.momentum) == (1e-4, 0.95)


def test_memnet_state_dict_keys_are_their_module_names() -> None:
    state = build_denoiser("memnet", 3).state_dict()
    assert len(state) == 246
    assert list(state)[:6] == [
        "feature_extractor.bn.weight",
        "feature_extractor.bn.bias",
        "feature_extractor.bn.running_mean",
        "feature_extractor.bn.running_var",
        "feature_extractor.bn.num_batches_tracked",
        "feature_extractor.conv.weight",
    ]
    assert state["dense_memory.0.recursive_unit.5.relu_conv2.conv.weight"].shape == (64, 64, 3, 3)
    # The gate of memory block i reads its 6 short-term outputs and the i + 1 long-term ones before it.
    assert state["dense_memory.0.gate_unit.conv.weight"].shape == (64, 7 * 64, 1, 1)
    assert state["dense_memory.2.gate_unit.conv.weight"].shape == (64, 9 * 64, 1, 1)
    assert state["reconstructor.conv.weight"].shape == (3, 64, 3, 3)


def test_an_untrained_dncnn_is_the_identity_and_outputs_are_not_clamped() -> None:
    """Their initialization zeroes the last convolution, so training starts from the noisy input itself;
    and nothing clamps the output, which stays outside [0,1] when the noisy input is."""
    torch.manual_seed(0)
    net = DnCNN(1, depth=4, width=8).eval()
    x = torch.randn(2, 1, 6, 6) * 2
    assert torch.equal(net(x), x)


def test_both_denoisers_are_residual() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    dncnn = DnCNN(3, depth=3, width=4).eval()
    last = dncnn.dncnn[-1]
    assert isinstance(last, torch.nn.Conv2d)
    torch.nn.init.normal_(last.weight)
    with torch.no_grad():
        assert torch.allclose(dncnn(x), x - dncnn.dncnn(x))
        memnet = MemNet(3, width=4, memory_blocks=2, residual_blocks=1).eval()
        out = memnet.feature_extractor(x)
        long_term = [out]
        for block in memnet.dense_memory:
            out = block(out, long_term)
        assert torch.allclose(memnet(x), memnet.reconstructor(out) + x)


def test_small_sizes_build_for_cpu_matrices() -> None:
    small = build_denoiser("dncnn", 1, depth=5, width=16)
    assert isinstance(small, DnCNN) and len(small.dncnn) == 2 + 3 * 3 + 1
    assert small(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    tiny = build_denoiser("memnet", 1, width=8, memory_blocks=1, residual_blocks=2)
    assert tiny(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_a_size_of_another_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match=r"dncnn has no size memory_blocks \(its sizes: depth, width\)"):
        build_denoiser("dncnn", 3, memory_blocks=2)
    assert set(SIZES) == set(ARCHS)
