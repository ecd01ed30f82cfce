"""The authors' released ResNet-50 BCN+WS as their code lays out its checkpoint (written out here
from the layout that mmbcn/checkpoints/authors.py documents), and such a checkpoint on disk."""

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 32


class AuthorsNorm(nn.Module):
    """The release's layout: batch stage ``pbn``; per-group affine of shape (1, G, 1)."""

    def __init__(self, channels):
        super().__init__()
        self.pbn = nn.BatchNorm2d(channels)
        self.weight = nn.Parameter(torch.ones(1, GROUPS, 1))
        self.bias = nn.Parameter(torch.zeros(1, GROUPS, 1))

    def forward(self, x):
        y = self.pbn(x).reshape(x.shape[0], GROUPS, -1)
        mean = y.mean(2, keepdim=True)
        var = y.var(2, correction=0, keepdim=True)
        return ((y - mean) / torch.sqrt(var + 1e-5) * self.weight + self.bias).reshape(x.shape)


class AuthorsConv(nn.Conv2d):
    def forward(self, x):
        w = self.weight.reshape(self.out_channels, -1)
        w = (w - w.mean(1, keepdim=True)) / torch.sqrt(w.var(1, keepdim=True) + 1e-5)
        return F.conv2d(x, w.reshape(self.weight.shape), None, self.stride, self.padding)


class AuthorsBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = AuthorsConv(inplanes, planes, 1, bias=False), AuthorsNorm(planes)
        self.conv2 = AuthorsConv(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = AuthorsNorm(planes)
        self.conv3 = AuthorsConv(planes, planes * 4, 1, bias=False)
        self.bn3 = AuthorsNorm(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                AuthorsConv(inplanes, planes * 4, 1, stride, bias=False), AuthorsNorm(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class AuthorsResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = AuthorsConv(3, 64, 7, 2, 3, bias=False)
        self.bn1 = AuthorsNorm(64)
        inplanes, layers = 64, []
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers.append(nn.Sequential(*[
                AuthorsBottleneck(inplanes if i == 0 else planes * 4, planes, stride if i == 0
                                  else 1) for i in range(blocks)]))
            inplanes = planes * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))



def write_authors_checkpoint(path) -> nn.Module:
    """A DataParallel-keyed checkpoint of :class:`AuthorsResNet50` with non-trivial norm
    parameters and statistics at ``path``; returns the model (eval mode)."""
    torch.manual_seed(0)
    model = AuthorsResNet50()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, AuthorsNorm):
                module.pbn.weight.uniform_(0.5, 1.5)
                module.pbn.bias.normal_(0, 0.1)
                module.pbn.running_mean.normal_(0, 0.1)
                module.pbn.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    state = {f'module.{k}': v for k, v in model.state_dict().items()}  # DataParallel keys
    torch.save({'state_dict': state, 'epoch': 90}, path)
    return model.eval()
