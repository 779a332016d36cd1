"""Train the MLP on raw [0,1] MNIST pixels (no mean/std) and save its weights: any training code will do."""

import sys

import torch
import torch.nn.functional as F
from frontline_mlp import example_mlp
from safetensors.torch import save_file
from torchvision.datasets import MNIST

mnist = MNIST(sys.argv[1], train=True)  # the folder holding MNIST/raw, e.g. $BENCH_DATA_DIR
x, y = mnist.data[:10000].unsqueeze(1).float() / 255, mnist.targets[:10000]
torch.manual_seed(0)
net = example_mlp(10)
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for _ in range(2):
    for i in range(0, len(x), 100):
        loss = F.cross_entropy(net(x[i : i + 100]), y[i : i + 100])
        opt.zero_grad()
        loss.backward()
        opt.step()
save_file(net.state_dict(), "mlp.safetensors")
