"""transformers' CLIP layout: clipedu reads CLIPModel folders and writes them, and both compute the same features.

transformers is a test dependency only; the reference here is `transformers.CLIPModel` itself.
"""

import dataclasses
import json
import warnings

import pytest
import torch

from clipedu import weights, weights_hf
from clipedu.model import CLIP, CLIPConfig, get_config
from clipedu.tokenizer import clip_tokenizer
from clipedu.weights_file import WeightsError

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

TOLERANCE = 1e-5  # max |clipedu - transformers| / max |transformers|


def hf_clip(act: str = "quick_gelu", text_eps: float = 1e-5, vision_eps: float = 1e-5, **text):
    """A small randomly initialised transformers CLIPModel; every weight nudged so that none is a plain 0 or 1."""
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77, vocab_size=49408, hidden_act=act, layer_norm_eps=text_eps,
                         **text),
        vision_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                           patch_size=8, image_size=32, hidden_act=act, layer_norm_eps=vision_eps),
        projection_dim=32, logit_scale_init_value=3.1)
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def inputs():
    # clipedu's tokenizer: SOT, tokens, EOT (49407, the largest id), then zeros; transformers pools at the
    # first eos_token_id (49407), clipedu at the argmax: the same position for these rows.
    tokens = clip_tokenizer()(["a photo of a cat", "a diagram of two dogs on a sofa", ""], context_length=77)
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)), tokens


def features(model, images, tokens, attention_mask=None):
    """(image features, text features, logit scale) of a transformers CLIPModel (v4 returns tensors, v5 outputs)."""
    with torch.no_grad():
        img = model.get_image_features(pixel_values=images)
        txt = model.get_text_features(input_ids=tokens, attention_mask=attention_mask)
    pooled = [x if isinstance(x, torch.Tensor) else x.pooler_output for x in (img, txt)]
    return (*pooled, model.logit_scale.detach())


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def assert_same_features(ours: CLIP, theirs, inputs) -> list[float]:
    images, tokens = inputs
    img, txt, scale = features(theirs, images, tokens)
    with torch.no_grad():
        diffs = [relative(ours.encode_image(images), img), relative(ours.encode_text(tokens), txt),
                 relative(ours.logit_scale.detach(), scale)]
    assert max(diffs) < TOLERANCE, diffs
    return diffs


@pytest.mark.parametrize("act, weights_name", [
    ("quick_gelu", "model.safetensors"), ("gelu", "model.safetensors"), ("quick_gelu", "pytorch_model.bin"),
])
def test_transformers_folder_loads_with_the_same_features(tmp_path, inputs, act, weights_name):
    hf = hf_clip(act)
    if weights_name == "model.safetensors":
        hf.save_pretrained(tmp_path)
    else:  # the older format, with the position_ids buffers that transformers < 4.31 saved
        hf.config.save_pretrained(tmp_path)
        sd = {**hf.state_dict(), "text_model.embeddings.position_ids": torch.arange(77)[None],
              "vision_model.embeddings.position_ids": torch.arange(17)[None]}
        torch.save(sd, tmp_path / weights_name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", weights_name]
    for path in (tmp_path, tmp_path / weights_name):
        ours = weights.load_clip(path)
        assert ours.config.act == act and not ours.training
        assert (ours.config.transformer_heads, ours.config.vision_heads) == (4, 4)  # width // 64 would say 1
        diffs = assert_same_features(ours, hf, inputs)
    print(f"{act} {weights_name}: max relative difference image, text, logit scale: {diffs}")


def test_padding_mask_changes_nothing_for_a_causal_text_tower(inputs):
    # clipedu passes no padding mask: the causal mask already keeps the padding after EOT out of EOT's features.
    images, tokens = inputs
    hf = hf_clip()
    mask = (torch.arange(77) <= tokens.argmax(-1, keepdim=True)).long()
    torch.testing.assert_close(features(hf, images, tokens, mask)[1], features(hf, images, tokens)[1])


def test_names_map_both_ways_onto_the_installed_transformers():
    hf_sd = hf_clip().state_dict()
    sd = weights_hf.to_openai(hf_sd)
    assert set(sd) == set(CLIP(dataclasses.replace(
        get_config("ViT-B/32"), embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64,
        vision_patch_size=8, transformer_width=64, transformer_layers=2)).state_dict())
    back = weights_hf.to_hf(sd)
    assert set(back) == set(hf_sd)
    for key, value in hf_sd.items():
        torch.testing.assert_close(back[key], value, rtol=0, atol=0)


def test_layer_norm_eps_comes_from_each_towers_config(tmp_path, inputs):
    hf = hf_clip(text_eps=1e-2, vision_eps=1e-3)  # large enough to change features far beyond the tolerance
    hf.save_pretrained(tmp_path)
    ours = weights.load_clip(tmp_path)
    assert (ours.ln_final.eps, ours.transformer.resblocks[0].ln_1.eps) == (1e-2, 1e-2)
    assert (ours.visual.ln_pre.eps, ours.visual.transformer.resblocks[1].ln_2.eps) == (1e-3, 1e-3)
    assert_same_features(ours, hf, inputs)


def test_sharded_checkpoint(tmp_path, inputs):
    hf = hf_clip()
    hf.save_pretrained(tmp_path, max_shard_size="5MB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert_same_features(weights.load_clip(tmp_path), hf, inputs)


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_export_to_transformers(tmp_path, inputs, act):
    torch.manual_seed(0)
    config = CLIPConfig(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                        context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2,
                        transformer_layers=2, vision_heads=4, act=act)
    ours = CLIP(config).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert weights_hf.save_hf(ours, tmp_path / "hf") == tmp_path / "hf"
    theirs = transformers.CLIPModel.from_pretrained(tmp_path / "hf").eval()
    assert (theirs.config.text_config.num_attention_heads, theirs.config.vision_config.num_attention_heads) == (2, 4)
    diffs = assert_same_features(ours, theirs, inputs)
    print(f"export {act}: max relative difference image, text, logit scale: {diffs}")
    again = weights.load_clip(tmp_path / "hf")  # and back: the very same model
    assert again.config == ours.config
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)


def test_export_refuses_what_transformers_cannot_hold(tmp_path):
    with pytest.raises(WeightsError, match="ViT image towers only"):
        weights_hf.save_hf(CLIP(get_config("course-rn")), tmp_path)
    siglip = CLIP(dataclasses.replace(get_config("course-vit"), init_logit_bias=-10.0))
    with pytest.raises(WeightsError, match="logit_bias"):
        weights_hf.save_hf(siglip, tmp_path)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ folders that must fail clearly


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    hf_clip().save_pretrained(folder)
    return folder


def copy_of(saved, tmp_path, config=None):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    (folder / "config.json").write_text(config if config is not None else (saved / "config.json").read_text())
    return folder


def test_damaged_or_foreign_config(saved, tmp_path):
    folder = copy_of(saved, tmp_path, config='{"model_type": "clip", "text_config": {')
    with pytest.raises(WeightsError, match="damaged"):
        weights.load_clip(folder)
    for kind in ("bert", "clip_vision_model", "siglip"):
        (folder / "config.json").write_text(json.dumps({"model_type": kind}))
        with pytest.raises(WeightsError, match=f"a '{kind}' model, not a transformers CLIPModel"):
            weights.load_clip(folder)
        with pytest.raises(WeightsError, match="not a transformers CLIPModel"):  # the file, config beside it
            weights.load_clip(folder / "model.safetensors")
    config = json.loads((saved / "config.json").read_text())
    config["text_config"]["hidden_act"] = "gelu_new"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="gelu_new"):
        weights.load_clip(folder)


def test_missing_weights_or_config(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / "model.safetensors").rename(tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="no weights file"):
        weights.load_clip(folder)
    with pytest.raises(WeightsError, match="no config.json beside them"):
        weights.load_clip(tmp_path / "model.safetensors")
    (folder / "config.json").unlink()
    with pytest.raises(WeightsError, match="folder without a config.json"):
        weights.load_clip(folder)


def test_unknown_names_and_shapes_are_named(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_of(saved, tmp_path)
    sd = load_file(str(saved / "model.safetensors"))
    save_file({**sd, "text_model.encoder.layers.0.adapter.weight": torch.zeros(2)}, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"text_model\.encoder\.layers\.0\.adapter\.weight"):
        weights.load_clip(folder)
    wide = {**sd, "vision_model.encoder.layers.1.mlp.fc1.weight": torch.zeros(300, 64)}
    save_file(wide, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"vision_model\.encoder\.layers\.1\.mlp\.fc1\.weight \[300, 64\]"):
        weights.load_clip(folder)
    del sd["text_model.encoder.layers.1.self_attn.k_proj.bias"]
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"layers\.1\.self_attn\.k_proj\.bias missing"):
        weights.load_clip(folder)
    text_only = {k: v for k, v in load_file(str(saved / "model.safetensors")).items() if k.startswith("text_")}
    save_file(text_only, str(folder / "model.safetensors"))  # what a CLIPTextModel saves
    with pytest.raises(WeightsError, match="not a whole CLIPModel"):
        weights.load_clip(folder)


def test_warns_when_transformers_would_pool_text_elsewhere(saved, tmp_path):
    config = json.loads((saved / "config.json").read_text())
    folder = copy_of(saved, tmp_path)
    for eos in (2, 49407):  # transformers: the argmax (legacy configs), or the first 49407; clipedu: the argmax
        config["text_config"]["eos_token_id"] = eos
        (folder / "config.json").write_text(json.dumps(config))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            weights.load_clip(folder)
    config["text_config"]["eos_token_id"] = 49000
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="first token 49000"):
        weights.load_clip(folder)


# ------------------------------------------------------------------ finding folders


def test_candidate_paths_find_transformers_snapshots(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))

    def snapshot(repo, config, *files):
        folder = hub / f"models--{repo}" / "snapshots" / "abc123"
        folder.mkdir(parents=True)
        if config is not None:
            (folder / "config.json").write_text(json.dumps(config))
        for name in files:
            (folder / name).write_bytes(b"x")
        return folder

    clip = snapshot("openai--clip-vit-base-patch32", {"model_type": "clip"}, "model.safetensors", "pytorch_model.bin")
    laion = snapshot("laion--CLIP-ViT-B-32-laion2B-s34B-b79K", {"model_type": "clip"}, "open_clip_model.safetensors",
                     "model.safetensors")
    snapshot("google-bert--bert-base-uncased", {"model_type": "bert"}, "model.safetensors")
    snapshot("someone--no-config", None, "model.safetensors")
    snapshot("someone--broken-config", None, "model.safetensors").joinpath("config.json").write_text("[")
    assert weights.candidate_paths() == [laion / "open_clip_model.safetensors", laion / "model.safetensors",
                                         clip / "model.safetensors", clip / "pytorch_model.bin"]
    monkeypatch.setenv(weights.ENV_VAR, str(clip))  # a transformers folder named in the variable comes first
    assert weights.find_checkpoint() == clip / "model.safetensors"
