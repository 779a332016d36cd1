"""The three MNIST classifiers Vaishnavi et al. (AAA, arXiv 1909.05921) defend.

The paper names them by structure only (Sec. 4: A, Madry et al.'s MNIST CNN; B, "a simple CNN with a single
convolution layer and a couple of fully connected layers"; C, "a classifier that only contains fully
connected layers"). A follows Madry et al.'s published model; the widths of B and C are ours, chosen to reach
the accuracies the zoo targets (A >= 99.0%, B >= 98.5%, C >= 97.5%) with the MNIST recipe. C, registered for
Fashion-MNIST too, is also the fully connected transfer classifier of their Table 5, which they describe in
the same words.
"""

from __future__ import annotations

from torch import nn

from bench.api import register_classifier

MNIST_SHAPE = (1, 28, 28)
GREY = ("mnist", "fashion-mnist")


@register_classifier("mnist-a", input_shape=MNIST_SHAPE, datasets=GREY, recipe="mnist")
def mnist_a(num_classes: int) -> nn.Module:
    """Vaishnavi et al.'s model A: Madry et al.'s MNIST CNN (2x conv5x5+maxpool, FC 1024)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024),
        nn.ReLU(),
        nn.Linear(1024, num_classes),
    )


@register_classifier("mnist-b", input_shape=MNIST_SHAPE, datasets=GREY, recipe="mnist")
def mnist_b(num_classes: int) -> nn.Module:
    """Vaishnavi et al.'s model B: one convolution (64 8x8, stride 2) then two fully connected layers."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 8, stride=2, padding=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 14 * 14, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


@register_classifier("mnist-c", input_shape=MNIST_SHAPE, datasets=GREY, recipe="mnist")
def mnist_c(num_classes: int) -> nn.Module:
    """Vaishnavi et al.'s model C: fully connected only (784-512-512-classes)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, num_classes),
    )
