"""Reading real-CLIP weight files: every known format round-trips, bad files fail clearly."""

import hashlib
import json
import sys
import warnings

import pytest
import torch

from clipedu import weights, weights_file
from clipedu.checkpoint import save_checkpoint
from clipedu.model import CLIP, CLIPConfig
from clipedu.weights_file import WeightsError

TINY = CLIPConfig(embed_dim=16, image_resolution=16, vision_layers=1, vision_width=64, vision_patch_size=8,
                  context_length=8, vocab_size=50, transformer_width=64, transformer_heads=1,
                  transformer_layers=1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = CLIP(TINY).eval()
    with torch.no_grad():  # openai's init leaves nothing at zero here, but make every weight distinct anyway
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 48, (3, 8), generator=g)
    tokens[:, -1] = 49  # end of text: the largest id
    return torch.randn(3, 3, 16, 16, generator=g), tokens


def assert_same_model(loaded: CLIP, model: CLIP, inputs) -> None:
    images, tokens = inputs
    assert loaded.config == model.config
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(images), model.encode_image(images), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode_text(tokens), model.encode_text(tokens), rtol=0, atol=0)


@pytest.fixture(autouse=True)
def no_real_caches(empty_weight_caches):
    """Every test here starts with no weights on disk (conftest's empty_weight_caches); returns HOME."""
    assert weights.ENV_VAR == "CLIPEDU_WEIGHTS"
    return empty_weight_caches


# ------------------------------------------------------------------ formats that load


def test_plain_state_dict_file(tmp_path, tiny, inputs):
    path = tmp_path / "weights.pt"
    torch.save(tiny.state_dict(), path)
    assert weights_file.detect_format(path) == "torch"
    assert_same_model(weights.load_clip(path), tiny, inputs)


def test_legacy_torch_save_format(tmp_path, tiny, inputs):
    path = tmp_path / "old.pt"
    torch.save(tiny.state_dict(), path, _use_new_zipfile_serialization=False)
    assert weights_file.detect_format(path) == "torch-legacy"
    assert_same_model(weights.load_clip(path), tiny, inputs)


def test_fp16_training_checkpoint_with_module_prefix(tmp_path, tiny, inputs):
    # open_clip's training checkpoints: {"epoch", "name", "state_dict" (DDP: "module." keys), "optimizer"}
    sd = {"module." + k: v.half() for k, v in tiny.state_dict().items()}
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "run", "state_dict": sd, "optimizer": {}}, path)
    loaded = weights.load_clip(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, sd["module." + key].float(), rtol=0, atol=0)


def test_clipedu_checkpoint(tmp_path, tiny, inputs):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model=tiny, step=3, config={"preset": "test"})
    assert_same_model(weights.load_clip(path), tiny, inputs)


def test_safetensors_file(tmp_path, tiny, inputs):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "open_clip_model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(path))
    assert weights_file.detect_format(path) == "safetensors"
    assert_same_model(weights.load_clip(path), tiny, inputs)


def test_safetensors_without_the_package(tmp_path, tiny, monkeypatch):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(path))
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # import now fails
    with pytest.raises(WeightsError, match="pip install safetensors"):
        weights_file.load_state_dict(path)


def torchscript_archive(model: CLIP, inputs, path) -> None:
    """A TorchScript file laid out like OpenAI's: traced, with the three extra non-parameter entries."""
    torch.manual_seed(0)
    copy = CLIP(model.config).eval()
    copy.load_state_dict(model.state_dict())
    for name in weights_file.JIT_EXTRA_KEYS:
        value = {"input_resolution": 16, "context_length": 8, "vocab_size": 50}[name]
        delattr(copy, name) if hasattr(copy, name) else None
        copy.register_buffer(name, torch.tensor(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.jit.save(torch.jit.trace(copy, inputs, check_trace=False), str(path))


def test_torchscript_archive_is_opt_in(tmp_path, tiny, inputs):
    path = tmp_path / "ViT-tiny.pt"
    torchscript_archive(tiny, inputs, path)
    assert weights_file.detect_format(path) == "torchscript"
    with pytest.raises(WeightsError, match="allow_torchscript=True") as err:
        weights.load_clip(path)
    assert "none of OpenAI's releases" in str(err.value)
    with pytest.warns(UserWarning, match="not one of OpenAI's releases"):
        sd = weights_file.load_state_dict(path, allow_torchscript=True)
    assert not set(weights_file.JIT_EXTRA_KEYS) & set(sd)
    assert not any(k.endswith("attn_mask") for k in sd)
    with pytest.warns(UserWarning):
        assert_same_model(weights.load_clip(path, allow_torchscript=True), tiny, inputs)


def test_convert_torchscript_to_plain_weights(tmp_path, tiny, inputs):
    src = tmp_path / "ViT-tiny.pt"
    torchscript_archive(tiny, inputs, src)
    with pytest.warns(UserWarning):
        pt = weights_file.convert_checkpoint(src, tmp_path / "out" / "tiny.pt", allow_torchscript=True)
    assert weights_file.detect_format(pt) == "torch"
    assert_same_model(weights.load_clip(pt), tiny, inputs)
    if pytest.importorskip("safetensors.torch"):
        with pytest.warns(UserWarning):
            st = weights_file.convert_checkpoint(src, tmp_path / "tiny.safetensors", allow_torchscript=True)
        assert weights_file.detect_format(st) == "safetensors"
        assert_same_model(weights.load_clip(st), tiny, inputs)


def test_openai_release_is_recognised_by_its_sha256(tmp_path, tiny, inputs, monkeypatch):
    path = tmp_path / "ViT-B-32.pt"
    torchscript_archive(tiny, inputs, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert weights_file.sha256(path) == digest
    assert weights_file.openai_release(path) is None
    monkeypatch.setitem(weights_file.OPENAI_SHA256, "ViT-B/32", digest)
    assert weights_file.openai_release(path) == "ViT-B/32"
    with pytest.raises(WeightsError, match="OpenAI's ViT-B/32 release"):
        weights_file.load_state_dict(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified release loads without a warning
        weights_file.load_state_dict(path, allow_torchscript=True)


# ------------------------------------------------------------------ files that must fail clearly


def test_truncated_download(tmp_path, tiny):
    good = tmp_path / "good.pt"
    torch.save(tiny.state_dict(), good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="download it again"):
        weights_file.load_state_dict(bad)


def test_web_page_saved_as_weights(tmp_path):
    path = tmp_path / "ViT-B-32.pt"
    path.write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    with pytest.raises(WeightsError, match="web page"):
        weights_file.load_state_dict(path)


def test_unknown_bytes_and_missing_file(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(WeightsError, match="not a weights format"):
        weights_file.detect_format(path)
    with pytest.raises(FileNotFoundError):
        weights_file.load_state_dict(tmp_path / "absent.pt")


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling this would create the marker file
        import pathlib
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"visual.proj": torch.zeros(2, 2), "payload": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="weights_only"):
        weights_file.load_state_dict(path)
    assert not marker.exists()


def test_not_a_clip_state_dict(tmp_path, tiny):
    path = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match="not a CLIP state dict"):
        weights.load_clip(path)
    path = tmp_path / "extra.pt"
    torch.save({**tiny.state_dict(), "visual.attn_pool.query": torch.zeros(4)}, path)
    with pytest.raises(WeightsError, match="different architecture"):
        weights.load_clip(path)
    path = tmp_path / "hf.pt"
    torch.save({"text_model.embeddings.token_embedding.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match="Hugging Face transformers"):
        weights.load_clip(path)
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="expected a state dict"):
        weights_file.load_state_dict(path)


# ------------------------------------------------------------------ finding files


def test_find_checkpoint_places_and_order(tmp_path, tiny, no_real_caches, monkeypatch):
    assert weights.find_checkpoint() is None
    clip_dir = no_real_caches / ".cache" / "clip"
    clip_dir.mkdir(parents=True)
    (clip_dir / "RN50.pt").write_bytes(b"x")
    (clip_dir / "ViT-B-32.pt").write_bytes(b"x")
    snapshot = no_real_caches / ".cache" / "huggingface" / "hub" / "models--laion--CLIP-x" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"x")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"x")
    found = weights.candidate_paths()
    assert [p.name for p in found] == ["ViT-B-32.pt", "RN50.pt", "open_clip_model.safetensors",
                                       "open_clip_pytorch_model.bin"]
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"x")
    monkeypatch.setenv(weights.ENV_VAR, str(mine))
    assert weights.find_checkpoint() == mine
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match=weights.ENV_VAR):
        weights.find_checkpoint()


@pytest.mark.parametrize("repo, model_cfg, expected", [
    ("models--timm--vit_base_patch32_clip_224.openai", {}, {}),
    ("models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K", {}, {"act": "gelu"}),
    ("models--someone--clip", {"quick_gelu": True, "text_cfg": {"heads": 8}}, {"transformer_heads": 8}),
])
def test_open_clip_config_sets_the_activation(tmp_path, repo, model_cfg, expected):
    snapshot = tmp_path / repo / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    assert weights.open_clip_overrides(snapshot / "open_clip_pytorch_model.bin") == expected
    assert weights.open_clip_overrides(tmp_path / "elsewhere.pt") == {}


def test_openai_file_names():
    assert weights.OPENAI_FILENAMES["ViT-B/32"] == "ViT-B-32.pt"
    assert weights.OPENAI_FILENAMES["ViT-L/14@336px"] == "ViT-L-14-336px.pt"
