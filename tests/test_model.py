"""The model against OpenCLIP (an independent implementation), the paper and openai's rules.

open_clip is a test dependency only: clipedu itself never imports it.
Models are randomly initialised and then perturbed, so that no branch is zero
(openai's init zeroes every bn3 gain, which would hide a wrong residual path).
"""

import dataclasses
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP as OpenCLIP

from clipedu.model import (
    CLIP,
    CONFIGS,
    CLIPConfig,
    build_model,
    get_config,
    l2_normalize,
)
from clipedu.transformer import Attention, LayerNorm, build_causal_mask


@pytest.fixture(autouse=True)
def inference_on_one_thread():
    """Every test here runs inference: no autograd. One thread: on a small shared CPU,
    competing intra-op threads are several times slower. Both are restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():
        yield
    torch.set_num_threads(threads)


def perturb_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add noise to every parameter and give BatchNorms random running statistics."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(0.02 * torch.randn(p.shape, generator=gen))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return model.eval()


def random_tokens(n: int, context: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """[SOT, words..., EOT, 0...] rows with EOT = vocab - 1 (the largest id, as in CLIP's BPE)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n, context, dtype=torch.long)
    for i in range(n):
        eot = context - 1 if i == 0 else int(torch.randint(1, context, (1,), generator=gen))
        tokens[i, 0] = vocab - 2
        tokens[i, 1:eot] = torch.randint(1, vocab - 2, (eot - 1,), generator=gen)
        tokens[i, eot] = vocab - 1
    return tokens


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def assert_same_outputs(ours: CLIP, theirs: OpenCLIP, n: int, seed: int = 0) -> None:
    cfg = ours.config
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, cfg.image_resolution, cfg.image_resolution, generator=gen)
    tokens = random_tokens(n, cfg.context_length, cfg.vocab_size, seed)
    ours_img, theirs_img = ours.encode_image(images), theirs.encode_image(images)
    ours_txt, theirs_txt = ours.encode_text(tokens), theirs.encode_text(tokens)
    assert ours_img.shape == theirs_img.shape == (n, cfg.embed_dim)
    assert ours_txt.shape == theirs_txt.shape == (n, cfg.embed_dim)
    assert rel_err(ours_img, theirs_img) < 1e-5
    assert rel_err(ours_txt, theirs_txt) < 1e-5


def check_both_directions(theirs: OpenCLIP, n: int, **overrides) -> CLIP:
    """open_clip weights -> build_model -> same outputs; clipedu weights -> open_clip -> same outputs."""
    perturb_(theirs, seed=0)
    ours = build_model(theirs.state_dict(), **overrides)
    assert_same_outputs(ours, theirs, n)

    perturb_(ours, seed=1)  # new weights, now flowing the other way
    theirs.load_state_dict(ours.state_dict(), strict=True)
    theirs.eval()
    assert_same_outputs(ours, theirs, n, seed=1)
    return ours


# Small open_clip models built from custom configs.
SMALL_TEXT = dict(context_length=16, vocab_size=500, width=128, heads=2, layers=2)
SMALL_VIT = dict(image_size=32, patch_size=8, width=128, layers=2)
SMALL_RN = dict(image_size=64, layers=[1, 2, 1, 1], width=16, patch_size=None)


def small_openclip(vision_cfg: dict, quick_gelu: bool = True, text_cfg: dict = SMALL_TEXT) -> OpenCLIP:
    torch.manual_seed(0)
    return OpenCLIP(embed_dim=64, vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=quick_gelu).eval()


@pytest.mark.parametrize("vision_cfg", [SMALL_VIT, SMALL_RN], ids=["vit", "resnet"])
def test_small_models_match_openclip_both_ways(vision_cfg):
    ours = check_both_directions(small_openclip(vision_cfg), n=4)
    assert ours.config.is_vit == (vision_cfg is SMALL_VIT)


@pytest.mark.parametrize(
    "name, openclip_name", [("ViT-B/32", "ViT-B-32-quickgelu"), ("RN50", "RN50-quickgelu")]
)
def test_released_architectures_match_openclip_both_ways(name, openclip_name):
    theirs = open_clip.create_model(openclip_name, pretrained=None).eval()
    # Identical names (and order) to openai's release, which open_clip's -quickgelu models keep.
    # open_clip's causal attn_mask is a non-persistent buffer, so it is not in either state dict.
    with torch.device("meta"):
        reference = CLIP(CONFIGS[name])
    ours_keys = {k: v.shape for k, v in reference.state_dict().items()}
    theirs_keys = {k: v.shape for k, v in theirs.state_dict().items()}
    assert ours_keys == theirs_keys
    assert "attn_mask" not in theirs.state_dict()

    ours = check_both_directions(theirs, n=2)
    assert ours.config == CONFIGS[name]  # build_model inferred the published architecture


def test_gelu_variant_matches_openclip_without_quickgelu():
    text_cfg = dict(SMALL_TEXT, heads=4)  # not width // 64: build_model must be told
    theirs = perturb_(small_openclip(SMALL_VIT, quick_gelu=False, text_cfg=text_cfg), seed=0)
    ours = build_model(theirs.state_dict(), act="gelu", transformer_heads=4)
    assert_same_outputs(ours, theirs, n=4)

    # With the wrong activation the outputs must differ: the comparison can fail.
    wrong = build_model(theirs.state_dict(), act="quick_gelu", transformer_heads=4)
    tokens = random_tokens(4, SMALL_TEXT["context_length"], SMALL_TEXT["vocab_size"])
    assert rel_err(wrong.encode_text(tokens), theirs.encode_text(tokens)) > 1e-3


def test_vit_b32_has_the_published_parameter_count():
    with torch.device("meta"):  # shapes only, no memory
        model = CLIP(get_config("ViT-B/32"))
    assert model.num_parameters() == 151_277_313


def test_build_model_drops_openai_jit_entries_and_returns_fp32_eval():
    theirs = perturb_(small_openclip(SMALL_VIT), seed=0)
    sd = {k: v.half() for k, v in theirs.state_dict().items()}  # openai ships fp16 weights
    sd.update(input_resolution=torch.tensor(32), context_length=torch.tensor(16), vocab_size=torch.tensor(500))
    ours = build_model(sd)
    assert not ours.training
    assert all(p.dtype == torch.float32 for p in ours.parameters())
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(value, sd[key].float(), rtol=0, atol=0)
    assert "input_resolution" in sd  # the caller's dict is not modified

    # Saved from a DistributedDataParallel wrapper: every key starts with "module.".
    wrapped = build_model({"module." + k: v for k, v in theirs.state_dict().items()})
    for key, value in wrapped.state_dict().items():
        torch.testing.assert_close(value, theirs.state_dict()[key], rtol=0, atol=0)


def test_siglip_bias_is_a_parameter_of_the_model_and_survives_build_model():
    """CLIPConfig.init_logit_bias (open_clip's init_logit_bias): a learned scalar registered after the others."""
    config = dataclasses.replace(get_config("course-vit"), vocab_size=100, context_length=8)
    torch.manual_seed(0)
    clip = CLIP(config)
    torch.manual_seed(0)
    siglip = CLIP(dataclasses.replace(config, init_logit_bias=-10.0))
    assert clip.logit_bias is None and "logit_bias" not in clip.state_dict()
    assert siglip.logit_bias.item() == -10.0 and siglip.logit_bias.requires_grad
    names = [n for n, _ in siglip.named_parameters()]
    assert names[names.index("logit_scale") + 1] == "logit_bias"
    assert [n for n in names if n != "logit_bias"] == [n for n, _ in clip.named_parameters()]
    assert all(torch.equal(clip.state_dict()[k], v) for k, v in siglip.state_dict().items() if k != "logit_bias")
    sd = siglip.state_dict()
    sd["logit_bias"] = torch.tensor(-3.5)
    rebuilt = build_model(sd, transformer_heads=config.transformer_heads)  # the bias comes back with the weights
    assert rebuilt.logit_bias.item() == -3.5 and build_model(clip.state_dict(), transformer_heads=2).logit_bias is None


def test_build_model_rejects_what_is_not_a_clip_state_dict():
    with pytest.raises(ValueError, match="not a CLIP state dict"):
        build_model({"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="training checkpoint"):
        build_model({"state_dict": {}, "epoch": 3})


def test_openai_initialisation_rules():
    cfg = CLIPConfig(
        embed_dim=256, image_resolution=64, vision_layers=2, vision_width=256, vision_patch_size=16,
        context_length=64, vocab_size=4000, transformer_width=256, transformer_heads=4, transformer_layers=3,
    )
    torch.manual_seed(0)
    model = CLIP(cfg)
    w, layers = 256, 3

    def close(t, expected_std):
        assert abs(t.std().item() / expected_std - 1) < 0.05, (t.std().item(), expected_std)

    close(model.token_embedding.weight, 0.02)
    close(model.positional_embedding, 0.01)
    close(model.text_projection, w ** -0.5)
    for block in model.transformer.resblocks:
        close(block.attn.in_proj_weight, w ** -0.5)
        close(block.attn.out_proj.weight, w ** -0.5 * (2 * layers) ** -0.5)
        close(block.mlp.c_fc.weight, (2 * w) ** -0.5)
        close(block.mlp.c_proj.weight, w ** -0.5 * (2 * layers) ** -0.5)
    close(model.visual.positional_embedding, w ** -0.5)
    close(model.visual.proj, w ** -0.5)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert model.logit_scale.item() == pytest.approx(2.6593, abs=1e-4)
    assert model.logit_scale.dim() == 0

    rn = CLIP(dataclasses.replace(cfg, vision_layers=(2, 1, 1, 1), vision_width=32, vision_patch_size=None))
    bn3 = [p for n, p in rn.visual.named_parameters() if n.startswith("layer") and n.endswith("bn3.weight")]
    assert len(bn3) == 5 and all((p == 0).all() for p in bn3)
    assert (rn.visual.bn3.weight == 1).all()  # the stem's bn3 is not a residual branch
    pool = rn.visual.attnpool
    for proj in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
        close(proj.weight, (32 * 32) ** -0.5)


def test_forward_returns_unit_features_and_the_temperature():
    model = perturb_(CLIP(get_config("course-vit")), seed=0)
    cfg = model.config
    images = torch.randn(3, 3, cfg.image_resolution, cfg.image_resolution)
    tokens = random_tokens(5, cfg.context_length, cfg.vocab_size)
    image_features, text_features, scale = model(images, tokens)
    assert image_features.shape == (3, cfg.embed_dim) and text_features.shape == (5, cfg.embed_dim)
    torch.testing.assert_close(image_features.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(text_features.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(image_features, F.normalize(model.encode_image(images), dim=-1))
    assert scale.item() == pytest.approx(math.exp(model.logit_scale.item()))


def test_l2_normalize_matches_hand_computed_values():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(l2_normalize(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_text_features_ignore_tokens_after_eot_but_not_before():
    model = perturb_(CLIP(get_config("course-vit")), seed=0)
    cfg = model.config
    tokens = torch.zeros(1, cfg.context_length, dtype=torch.long)
    tokens[0, :4] = torch.tensor([cfg.vocab_size - 2, 10, 11, cfg.vocab_size - 1])
    after, before = tokens.clone(), tokens.clone()
    after[0, 4:] = 7  # garbage after EOT: hidden by the causal mask
    before[0, 2] = 12
    reference = model.encode_text(tokens)
    torch.testing.assert_close(model.encode_text(after), reference, rtol=1e-6, atol=1e-6)
    assert rel_err(model.encode_text(before), reference) > 1e-3


def test_causal_attention_matches_the_formula():
    torch.manual_seed(0)
    attn = Attention(d_model=12, n_head=3).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    mask = build_causal_mask(5).double()
    assert mask[0, 1] == float("-inf") and mask[1, 0] == 0 and mask[1, 1] == 0

    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    heads = []
    for h in range(3):  # softmax(q k^T / sqrt(d) + M) v, one head at a time
        s = slice(4 * h, 4 * h + 4)
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2.0 + mask, dim=-1)
        heads.append(weights @ v[..., s])
    expected = attn.out_proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(x, mask), expected)


def test_layernorm_computes_in_fp32_and_casts_back():
    ln = LayerNorm(8)
    x = (torch.randn(4, 8) * 300).half()
    out = ln(x)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, F.layer_norm(x.float(), (8,)).half())


@pytest.mark.parametrize("name", ["course-vit", "course-rn"])
def test_bad_images_raise_clear_errors(name):
    model = CLIP(get_config(name)).eval()
    r = model.config.image_resolution
    with pytest.raises(ValueError, match=rf"{r}x{r}.*clipedu.transforms"):
        model.encode_image(torch.randn(2, 3, r + 32, r + 32))
    with pytest.raises(ValueError, match=r"3 \(RGB\) channels"):
        model.encode_image(torch.randn(2, 1, r, r))
    with pytest.raises(ValueError, match="4-D batch.*batch dimension"):
        model.encode_image(torch.randn(3, r, r))
    with pytest.raises(ValueError, match="float tensor"):
        model.encode_image(torch.zeros(2, 3, r, r, dtype=torch.uint8))


def test_bad_tokens_raise_clear_errors():
    model = CLIP(get_config("course-vit")).eval()
    ctx, vocab = model.config.context_length, model.config.vocab_size
    with pytest.raises(ValueError, match=rf"\[N, {ctx}\].*context_length={ctx}"):
        model.encode_text(torch.zeros(2, 77, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"\[N, {ctx}\]"):
        model.encode_text(torch.zeros(ctx, dtype=torch.long))
    bad = random_tokens(2, ctx, vocab)
    bad[1, 3] = vocab + 5
    with pytest.raises(ValueError, match=rf"token id {vocab + 5} .*\[0, {vocab}\)"):
        model.encode_text(bad)
    bad[1, 3] = -1
    with pytest.raises(ValueError, match="token id -1"):
        model.encode_text(bad)
    with pytest.raises(ValueError, match="integer"):
        model.encode_text(torch.zeros(2, ctx))
    with pytest.raises(ValueError, match="integer"):
        model.encode_text(torch.zeros(2, ctx, dtype=torch.bool))
    assert model.encode_text(random_tokens(2, ctx, vocab).int()).shape == (2, model.config.embed_dim)


def test_configs():
    with pytest.raises(ValueError, match="unknown model config 'ViT-B-32'; known configs: .*ViT-B/32") as err:
        get_config("ViT-B-32")
    assert all(name in str(err.value) for name in CONFIGS)
    cfg = get_config("RN50")
    assert cfg.heads_for_vision == 32 and get_config("ViT-L/14").heads_for_vision == 16
    cfg.embed_dim = 1  # a copy: the registry is untouched
    assert CONFIGS["RN50"].embed_dim == 1024
    with pytest.raises(ValueError, match="vision_patch_size"):
        dataclasses.replace(CONFIGS["course-vit"], vision_patch_size=None)


def test_text_cut_after_its_last_end_of_text_gives_the_same_features():
    # causal attention: no token sees the padding after it, so [N, L] with L past every EOT equals [N, 77]
    from clipedu.embed import encode_texts
    from clipedu.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    tok = clip_tokenizer()
    config = dataclasses.replace(get_config("course-vit"), vocab_size=tok.vocab_size, context_length=77)
    model = CLIP(config).eval()
    texts = ["a photo of a cat.", "a blurry photo of the large red circle on the left.", "hi"]
    full = encode_texts(model, tok, texts)
    trimmed = encode_texts(model, tok, texts, trim=True)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)
    tokens = tok(texts, context_length=77)
    last = int(tokens.argmax(dim=-1).max())
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens[:, : last + 1]), model.encode_text(tokens),
                                   rtol=1e-4, atol=1e-5)  # unnormalised features: float32 summation order
        # cutting before an end-of-text token changes that text's features: the check is not vacuous
        assert not torch.allclose(model.encode_text(tokens[:, :last]), model.encode_text(tokens), atol=1e-4)
    with pytest.raises(ValueError, match=r"\[N, 77\]"):
        model.encode_text(torch.zeros(2, 78, dtype=torch.long))
