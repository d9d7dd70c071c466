"""CLIP's modified ResNet image encoder (CLIP paper section 2.4).

Three changes to ResNet-50 (He et al. 2016), all kept from openai/CLIP:

1. The stem has three 3x3 convolutions instead of one 7x7, and an average
   pool instead of a max pool.
2. Strided convolutions are replaced by a stride-1 convolution followed by an
   average pool ("anti-aliased" downsampling, Zhang 2019), in the main path
   and in the shortcut (``downsample.-1`` is that pool; it has no weights).
3. The final global average pool is replaced by attention pooling: one
   multi-head attention layer in which the mean of the feature map is the only
   query (``AttentionPool2d``).

The feature map shrinks 32x from input to output, so the input resolution
must be a multiple of 32.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .vision import check_images


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, (avg-pool if strided), 1x1 expand by 4; plus a shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)

        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # The shortcut pools first and then projects with a stride-1 1x1 conv.
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean feature vector queries all positions of the grid.

    Flatten the [C, g, g] map into g*g tokens, prepend their mean, add learned
    positions, and run one multi-head attention in which only the mean token
    is a query. Its output, projected by ``c_proj``, is the image embedding.
    """

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int | None = None):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5
        )
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # [N, h*w, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # [N, 1 + h*w, C]
        x = x + self.positional_embedding.to(x.dtype)

        def heads(t: torch.Tensor) -> torch.Tensor:  # [N, L, C] -> [N, heads, L, C/heads]
            return t.view(n, t.shape[1], self.num_heads, c // self.num_heads).transpose(1, 2)

        q = heads(self.q_proj(x[:, :1]))  # only the mean token asks
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v)  # [N, heads, 1, C/heads]
        return self.c_proj(out.transpose(1, 2).reshape(n, c))


class ModifiedResNet(nn.Module):
    """ResNet with a 3-conv stem, anti-aliased downsampling and attention pooling."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        output_dim: int,
        heads: int,
        input_resolution: int = 224,
        width: int = 64,
    ):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the block count of 4 stages, got {layers}")
        if input_resolution % 32 != 0:
            raise ValueError(
                f"input_resolution={input_resolution} must be a multiple of 32 (the ResNet downsamples 32x)"
            )
        self.input_resolution = input_resolution
        self.output_dim = output_dim

        # The stem: three 3x3 convs (the first strided), then a 2x2 average pool.
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)

        self._inplanes = width  # grows as stages are built
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)

        embed_dim = width * 32  # channels after layer4: width * 8 * expansion
        self.attnpool = AttentionPool2d(input_resolution // 32, embed_dim, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, R, R] -> unnormalised image embeddings [N, output_dim]."""
        check_images(x, self.input_resolution)
        x = self.stem(x.to(self.conv1.weight.dtype))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)
