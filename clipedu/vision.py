"""The Vision Transformer image encoder (Dosovitskiy et al. 2021; CLIP paper section 2.4).

An image is cut into p x p patches, each patch is linearly embedded (a conv
with kernel = stride = p), a learned class token is prepended, positions are
added, and a transformer runs over the sequence. The class token's output,
layer-normed and projected by ``proj``, is the image embedding. CLIP adds one
small change to the original ViT: an extra LayerNorm (``ln_pre``) before the
transformer.
"""

from __future__ import annotations

import torch
from torch import nn

from .transformer import LayerNorm, Transformer


def check_images(images: torch.Tensor, resolution: int) -> None:
    """Raise a ValueError unless ``images`` is a float batch [N, 3, resolution, resolution]."""
    hint = "preprocess images with clipedu.transforms (resize, center crop, normalise) first"
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}; {hint}")
    if not images.is_floating_point():
        raise ValueError(
            f"images must be a float tensor of normalised pixels, got dtype {images.dtype}; {hint}"
        )
    expected = f"[N, 3, {resolution}, {resolution}]"
    if images.dim() != 4:
        extra = " (a single image? add a batch dimension with images[None])" if images.dim() == 3 else ""
        raise ValueError(f"images must be a 4-D batch {expected}, got shape {list(images.shape)}{extra}; {hint}")
    if images.shape[1] != 3:
        raise ValueError(
            f"images must have 3 (RGB) channels in dim 1 {expected}, got shape {list(images.shape)}; {hint}"
        )
    if images.shape[2] != resolution or images.shape[3] != resolution:
        raise ValueError(
            f"this model takes {resolution}x{resolution} images {expected}, got shape "
            f"{list(images.shape)}; {hint}"
        )


class VisionTransformer(nn.Module):
    """ViT image encoder: patchify, class token, positions, ln_pre, transformer, ln_post, proj."""

    def __init__(
        self,
        input_resolution: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
        act: str = "quick_gelu",
    ):
        super().__init__()
        if input_resolution % patch_size != 0:
            raise ValueError(
                f"input_resolution={input_resolution} is not a multiple of patch_size={patch_size}"
            )
        self.input_resolution = input_resolution
        self.patch_size = patch_size
        self.output_dim = output_dim
        grid = input_resolution // patch_size
        scale = width ** -0.5

        # Patch embedding: a p x p conv with stride p is one linear map per patch.
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, act=act)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, R, R] -> unnormalised image embeddings [N, output_dim]."""
        check_images(x, self.input_resolution)
        x = self.conv1(x.to(self.conv1.weight.dtype))  # [N, W, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [N, grid*grid, W]: one token per patch
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)  # [N, 1 + grid*grid, W]
        x = x + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x)
        # Only the class token is used, so only it needs ln_post.
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj
