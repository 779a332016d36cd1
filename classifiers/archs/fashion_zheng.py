"""Zheng et al.'s Fashion-MNIST classifier (tianzheng4/Distributionally-Adversarial-Attack,
``fashion-mnist-master/model.py``): the native classifier of Vaishnavi et al.'s Table 5 (their footnote 9).

Their TensorFlow model, layer for layer: 5x5 conv 32, 5x5 conv 32, 2x2 max-pool, 3x3 conv 64, 3x3 conv 64,
2x2 max-pool ('SAME' padding throughout, ReLU after every convolution), a fully connected layer of 1024 with
ReLU, batch normalization, and the logit layer; 3.3M parameters. Initialization is theirs too: weights from a
normal truncated at two standard deviations of 0.1, biases 0.1.

One departure: their ``tf.layers.batch_normalization`` is called without ``training=True``, so in their code
it always normalizes with its initial moving statistics (mean 0, variance 1) and acts as a learned per-unit
scale and shift. Here it is a real batch normalization (batch statistics in training, running ones in
evaluation), which is what the layer is named for and what a port of the model would use. Vaishnavi et al.
use the model naturally trained (their footnote 5), with the ``mnist`` recipe here; Zheng et al.'s
checkpoint is adversarially trained and is not used.
"""

from __future__ import annotations

from torch import nn

from bench.api import register_classifier


@register_classifier(
    "fashion-zheng",
    input_shape=(1, 28, 28),
    datasets=("fashion-mnist", "mnist"),
    recipe="mnist",
    description="Zheng et al.'s Fashion-MNIST CNN (4 conv, FC 1024, BN), Vaishnavi et al.'s native model",
)
def fashion_zheng(num_classes: int) -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(32, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024),
        nn.ReLU(),
        nn.BatchNorm1d(1024, eps=1e-3),
        nn.Linear(1024, num_classes),
    )
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
            nn.init.trunc_normal_(m.weight, std=0.1, a=-0.2, b=0.2)
            nn.init.constant_(m.bias, 0.1)
    return net
