"""ResNet-20 (CIFAR, option A shortcuts) in PyTorch, for the training row.

The network mirrors `keras_resnet.ResNet20()`: a 3x3 convolution with 16
filters, three stages of three basic blocks with 16, 32 and 64 filters,
identity shortcuts that subsample and zero-pad channels, global average
pooling and a 10-way linear layer. It is trained the way the package's
recipe trains: SGD with momentum 0.9, weight decay 1e-4, cross-entropy.
"""

import torch
from torch import nn
from torch.nn import functional


class PaddedIdentity(nn.Module):
    def __init__(self, channels, stride):
        super().__init__()
        self.channels = channels
        self.stride = stride

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.channels - x.shape[1]
        return functional.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        if stride == 1 and in_channels == channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = PaddedIdentity(channels, stride)

    def forward(self, x):
        y = functional.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return functional.relu(y + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, classes=10, blocks=3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        layers, in_channels = [], 16
        for index, channels in enumerate((16, 32, 64)):
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(BasicBlock(in_channels, channels, stride))
                in_channels = channels
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(functional.adaptive_avg_pool2d(x, 1), 1))


def torch_train_step(x, y, threads):
    """Return a function that runs one training step on the NHWC batch x."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ResNet20()
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4
    )
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(y).long()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return step
