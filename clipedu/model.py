"""CLIP: two encoders, two projections, L2 normalisation and a learned temperature.

The paper's Figure 3 in code:

    I_f = image_encoder(I)                 # encode_image, [n, d_e] after proj
    T_f = text_encoder(T)                  # encode_text,  [n, d_e] after text_projection
    I_e = l2_normalize(I_f); T_e = l2_normalize(T_f)
    logits = I_e @ T_e.T * exp(t)          # t is logit_scale

``CLIP.forward`` returns (I_e, T_e, exp(t)); the loss lives in ``clipedu.loss``.
Parameter names are openai/CLIP's, so ``build_model`` loads OpenAI and OpenCLIP
(``-quickgelu``) state dicts strictly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from .resnet import ModifiedResNet
from .transformer import LayerNorm, Transformer, build_causal_mask
from .vision import VisionTransformer


@dataclass
class CLIPConfig:
    """Architecture hyperparameters, named as in openai/CLIP's ``CLIP.__init__``."""

    embed_dim: int  # size of the shared embedding space
    image_resolution: int
    vision_layers: int | tuple[int, int, int, int]  # int: ViT depth; 4-tuple: ResNet blocks per stage
    vision_width: int  # ViT width, or the ResNet's stem width (64 for RN50)
    vision_patch_size: int | None  # None for a ResNet
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int
    vision_heads: int | None = None  # None: openai's rule (see heads_for_vision)
    act: str = "quick_gelu"  # "quick_gelu" as OpenAI trained, or "gelu"
    init_logit_bias: float | None = None  # SigLIP's learned bias b starts here; None: no bias (CLIP)

    def __post_init__(self) -> None:
        if isinstance(self.vision_layers, list):
            self.vision_layers = tuple(self.vision_layers)
        if self.is_vit and self.vision_patch_size is None:
            raise ValueError("a ViT config (int vision_layers) needs vision_patch_size")
        if not self.is_vit:
            if len(self.vision_layers) != 4 or self.vision_patch_size is not None:
                raise ValueError(
                    "a ResNet config needs vision_layers as 4 block counts and vision_patch_size=None"
                )
        if self.act not in ("quick_gelu", "gelu"):
            raise ValueError(f"unknown act {self.act!r}: use 'quick_gelu' or 'gelu'")

    @property
    def is_vit(self) -> bool:
        return isinstance(self.vision_layers, int)

    @property
    def heads_for_vision(self) -> int:
        """openai's rule: one head per 64 channels (ResNet: of the width*32 final features)."""
        if self.vision_heads is not None:
            return self.vision_heads
        return self.vision_width // 64 if self.is_vit else self.vision_width * 32 // 64


_TEXT_77 = dict(context_length=77, vocab_size=49408, transformer_heads=8, transformer_layers=12)

CONFIGS: dict[str, CLIPConfig] = {
    "RN50": CLIPConfig(1024, 224, (3, 4, 6, 3), 64, None, transformer_width=512, **_TEXT_77),
    "RN101": CLIPConfig(512, 224, (3, 4, 23, 3), 64, None, transformer_width=512, **_TEXT_77),
    "ViT-B/32": CLIPConfig(512, 224, 12, 768, 32, transformer_width=512, **_TEXT_77),
    "ViT-B/16": CLIPConfig(512, 224, 12, 768, 16, transformer_width=512, **_TEXT_77),
    "ViT-L/14": CLIPConfig(
        768, 224, 24, 1024, 14, context_length=77, vocab_size=49408,
        transformer_width=768, transformer_heads=12, transformer_layers=12,
    ),
    # Course models: small enough to train on a laptop CPU in minutes. The
    # vocabulary is CLIP's BPE; use dataclasses.replace(cfg, vocab_size=...)
    # for a smaller tokenizer. The ResNet gets 64 px: it downsamples 32x, and
    # at 32 px its attention pool would see a single position.
    "course-vit": CLIPConfig(
        embed_dim=128, image_resolution=32, vision_layers=3, vision_width=128, vision_patch_size=8,
        context_length=32, vocab_size=49408,
        transformer_width=128, transformer_heads=2, transformer_layers=3,
    ),
    "course-rn": CLIPConfig(
        embed_dim=128, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16,
        vision_patch_size=None, context_length=32, vocab_size=49408,
        transformer_width=128, transformer_heads=2, transformer_layers=3,
    ),
}


def get_config(name: str) -> CLIPConfig:
    """A copy of the named config (edit it freely, or use dataclasses.replace)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; known configs: {', '.join(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name])


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """x / ||x||: put embeddings on the unit sphere so that dot products are cosines."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(eps)


class CLIP(nn.Module):
    """The image tower (``visual``) and the text tower (the remaining top-level names)."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.context_length = config.context_length
        self.vocab_size = config.vocab_size

        if config.is_vit:
            self.visual = VisionTransformer(
                input_resolution=config.image_resolution, patch_size=config.vision_patch_size,
                width=config.vision_width, layers=config.vision_layers, heads=config.heads_for_vision,
                output_dim=config.embed_dim, act=config.act)
        else:
            self.visual = ModifiedResNet(
                layers=config.vision_layers, output_dim=config.embed_dim, heads=config.heads_for_vision,
                input_resolution=config.image_resolution, width=config.vision_width)

        width = config.transformer_width
        self.transformer = Transformer(
            width, config.transformer_layers, config.transformer_heads,
            attn_mask=build_causal_mask(config.context_length), act=config.act,
        )
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, width))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, config.embed_dim))
        # The temperature t of Figure 3, stored as a log so exp(t) stays positive.
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        # SigLIP's bias b (Zhai et al. 2023), registered last as open_clip does; None for CLIP.
        bias = config.init_logit_bias
        self.logit_bias = None if bias is None else nn.Parameter(torch.tensor(float(bias)))

        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """openai/CLIP's initialisation of the text tower, projections and ResNet."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features ** -0.5
            for proj in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(proj.weight, std=std)
            # Zero the last BN gain of every residual branch, so each block
            # starts as the identity (Goyal et al. 2017).
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
                for name, param in stage.named_parameters():
                    if name.endswith("bn3.weight"):
                        nn.init.zeros_(param)

        width, layers = self.transformer.width, self.transformer.layers
        attn_std = width ** -0.5
        # Projections into the residual stream shrink with depth (as in GPT-2).
        proj_std = width ** -0.5 * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images [N, 3, R, R] -> image embeddings [N, embed_dim], not normalised."""
        return self.visual(images)

    def check_tokens(self, tokens: torch.Tensor) -> None:
        """Raise a ValueError unless ``tokens`` is an integer batch [N, context_length] of valid ids."""
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.long, torch.int):
            got = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be an integer (torch.long) tensor of token ids, got {got}; "
                             "use the tokenizer's batch encoding")
        if tokens.dim() != 2 or not 1 <= tokens.shape[1] <= self.context_length:
            raise ValueError(
                f"tokens must have shape [N, {self.context_length}] (this model's context_length; or shorter, "
                f"cut after the last end-of-text), got {list(tokens.shape)}; tokenize with "
                f"context_length={self.context_length}"
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            bad = tokens[(tokens < 0) | (tokens >= self.vocab_size)][0].item()
            raise ValueError(
                f"token id {bad} is outside the vocabulary [0, {self.vocab_size}); the tokenizer "
                f"and the model's vocab_size disagree"
            )

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [N, context_length] -> text embeddings [N, embed_dim], not normalised.

        The text is represented by the features at its end-of-text token,
        which has the largest id in CLIP's vocabulary, hence argmax. A batch
        may also be cut after its last end-of-text token ([N, L], L <= context_length):
        causal attention means no token sees the padding after it, so the
        result is the same and the cost falls with L.
        """
        self.check_tokens(tokens)
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]  # [N, L, W]
        x = self.transformer(x)  # causal: each token sees only what precedes it
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        # LayerNorm acts per token, so normalising only the pooled token is the same.
        x = self.ln_final(x)
        return x @ self.text_projection

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        """Returns (unit image features [N, E], unit text features [M, E], exp(logit_scale))."""
        image_features = l2_normalize(self.encode_image(images))
        text_features = l2_normalize(self.encode_text(tokens))
        return image_features, text_features, self.logit_scale.exp()


def _count_blocks(state_dict: dict, prefix: str) -> int:
    """Number of distinct N in keys '<prefix>N.…'."""
    return len({k[len(prefix):].split(".")[0] for k in state_dict if k.startswith(prefix)})


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> CLIPConfig:
    """Infer the architecture from tensor shapes, as openai/CLIP's ``build_model`` does."""
    sd = state_dict
    try:
        if "visual.proj" in sd:  # ViT
            conv1 = sd["visual.conv1.weight"]
            vision_width, patch = conv1.shape[0], conv1.shape[-1]
            grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            vision_layers = _count_blocks(sd, "visual.transformer.resblocks.")
            resolution = patch * grid
        else:  # ModifiedResNet
            vision_layers = tuple(_count_blocks(sd, f"visual.layer{i}.") for i in (1, 2, 3, 4))
            vision_width = sd["visual.layer1.0.conv1.weight"].shape[0]
            grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
            patch, resolution = None, 32 * grid
        transformer_width = sd["ln_final.weight"].shape[0]
        return CLIPConfig(
            embed_dim=sd["text_projection"].shape[1],
            image_resolution=resolution,
            vision_layers=vision_layers,
            vision_width=vision_width,
            vision_patch_size=patch,
            context_length=sd["positional_embedding"].shape[0],
            vocab_size=sd["token_embedding.weight"].shape[0],
            transformer_width=transformer_width,
            transformer_heads=transformer_width // 64,
            transformer_layers=_count_blocks(sd, "transformer.resblocks."),
            init_logit_bias=float(sd["logit_bias"]) if "logit_bias" in sd else None,
        )
    except KeyError as err:
        raise ValueError(
            f"state dict has no entry {err.args[0]!r}: it is not a CLIP state dict with openai/CLIP "
            "names (OpenAI or OpenCLIP '-quickgelu' checkpoints, or clipedu's own)"
        ) from None


def build_model(state_dict: dict[str, torch.Tensor], **overrides) -> CLIP:
    """A CLIP in eval mode and float32 holding ``state_dict``, its architecture inferred.

    ``overrides`` replace inferred config fields that shapes cannot reveal,
    e.g. ``act="gelu"`` or ``transformer_heads=4`` (openai assumes width // 64).
    """
    if not isinstance(state_dict, dict):
        raise ValueError(f"expected a state dict (dict of tensors), got {type(state_dict).__name__}")
    if "state_dict" in state_dict:
        raise ValueError("this looks like a training checkpoint: pass checkpoint['state_dict']")
    # OpenAI's JIT archives carry these three as tensors; they are not parameters.
    sd = {k: v for k, v in state_dict.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    if sd and all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    config = dataclasses.replace(config_from_state_dict(sd), **overrides)
    model = CLIP(config)
    model.load_state_dict(sd, strict=True)  # copies (and casts fp16 entries) into fp32 parameters
    return model.float().eval()
