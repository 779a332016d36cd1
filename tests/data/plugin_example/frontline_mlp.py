"""An architecture trained outside Frontline: registered without a recipe, so only loaded from weights."""

from __future__ import annotations

from torch import nn

from bench.api import register_classifier


@register_classifier("example-mlp", input_shape=(1, 28, 28), datasets=("mnist", "fashion-mnist"))
def example_mlp(num_classes: int) -> nn.Module:
    """A two-layer perceptron for 28x28 greyscale images."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, num_classes))
