from __future__ import annotations

import pytest

from bench.api import ConfigError
from bench.certify import PRESETS, CertifyParams, CertifyPreset


def test_defaults_are_cohen_et_al() -> None:
    p = CertifyParams()
    assert (p.n0, p.n, p.alpha) == (100, 100_000, 0.001)
    assert p.forward_passes == 100_100


def test_salman_preset_is_every_20th_of_500_images_at_n_10000() -> None:
    salman = PRESETS["salman"]
    assert (salman.params.n0, salman.params.n, salman.params.alpha) == (100, 10_000, 0.001)
    indices = salman.image_indices(10_000)
    assert len(indices) == 500 and indices[:3] == [0, 20, 40] and indices[-1] == 9_980
    # A smaller test split gives what it has, still every 20th.
    assert salman.image_indices(100) == [0, 20, 40, 60, 80]


def test_a_preset_needs_a_positive_stride_and_count() -> None:
    with pytest.raises(ConfigError, match="every >= 1"):
        CertifyPreset(CertifyParams(), every=0, count=10, source="")
    with pytest.raises(ConfigError, match="count >= 1"):
        CertifyPreset(CertifyParams(), every=1, count=0, source="")
