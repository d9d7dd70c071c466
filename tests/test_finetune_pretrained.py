"""Fine-tuning pretrained weights from the command line (`--init`, `--lock-image`) and WiSE-FT.

The "pretrained" files are small random open_clip models saved as open_clip saves them
(open_clip_pytorch_model.bin with its open_clip_config.json), with CLIP's real text
interface: 77 tokens, a 49,408-token vocabulary. The data is a caption folder of
coloured shapes written by the test.
"""

import json
import math

import pytest
import torch
from open_clip.model import CLIP as OpenCLIP
from PIL import Image, ImageDraw

from clipedu.checkpoint import load_checkpoint
from clipedu.loss import clip_loss
from clipedu.model import CLIPConfig, get_config
from clipedu.tokenizer import clip_tokenizer
from clipedu.train.__main__ import main
from clipedu.train.config import FINETUNE_DEFAULTS, finetune_config, get_preset
from clipedu.train.loop import train
from clipedu.train.setup import load_pretrained, model_config, resolve_config
from clipedu.train.state import load_model
from clipedu.train.wise import wise_ft
from clipedu.transforms import normalize
from clipedu.weights import load_clip

TEXT = dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2)  # heads 4, not width // 64
VIT = dict(image_size=32, patch_size=8, width=64, layers=2)
RESNET = dict(image_size=64, layers=[1, 1, 1, 1], width=16, patch_size=None)  # BatchNorm in the image tower
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 30),
           "white": (245, 245, 245), "purple": (140, 40, 170)}


def save_open_clip(folder, vision_cfg, dtype=torch.float32):
    """A random open_clip model saved in open_clip's Hugging Face layout; returns the weights file."""
    torch.manual_seed(0)
    model = OpenCLIP(embed_dim=32, vision_cfg=vision_cfg, text_cfg=TEXT, quick_gelu=True)
    folder.mkdir(parents=True)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save({k: v.to(dtype) for k, v in model.state_dict().items()}, path)
    config = {"embed_dim": 32, "quick_gelu": True, "vision_cfg": vision_cfg, "text_cfg": TEXT}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{"vit", "resnet", "fp16"}: weights files; "data": a folder of 12 captioned shapes (10 train, 2 held out)."""
    root = tmp_path_factory.mktemp("finetune")
    found = {"vit": save_open_clip(root / "vit", VIT), "resnet": save_open_clip(root / "resnet", RESNET),
             "fp16": save_open_clip(root / "fp16", VIT, torch.float16), "data": root / "data"}
    found["data"].mkdir()
    rows = ["image,caption"]
    for i, (colour, rgb) in enumerate(COLOURS.items()):
        for j, shape in enumerate(("square", "circle")):
            image = Image.new("RGB", (48, 48), (110, 110, 110))
            draw = ImageDraw.Draw(image)
            (draw.rectangle if shape == "square" else draw.ellipse)((8, 8, 40, 40), fill=rgb)
            image.save(found["data"] / f"{i}_{j}.png")
            rows.append(f"{i}_{j}.png,a {colour} {shape}")
    (found["data"] / "captions.csv").write_text("\n".join(rows) + "\n")
    return found


def run(files, out, weights="vit", *flags):
    args = ["--data", str(files["data"]), "--init", str(files[weights]), "--out", str(out), "--batch-size", "10",
            "--no-progress", *flags]
    assert main(args) == 0


def fixture_loss(model, files) -> float:
    """CLIP's loss of `model` on the 10 training images of the fixture folder, uncropped, one batch."""
    from clipedu.data.folders import CaptionFolder

    folder = CaptionFolder(files["data"], image_size=model.config.image_resolution)
    images = normalize(torch.stack([folder[i][0] for i in range(10)]))
    tokens = clip_tokenizer()([folder.captions[i][0] for i in range(10)], context_length=77)
    with torch.no_grad():
        return clip_loss(*model.eval()(images, tokens)).item()


# ------------------------------------------------------------------ --init


def test_init_with_lr_zero_saves_the_loaded_weights_bit_for_bit(files, tmp_path):
    run(files, tmp_path, "vit", "--lr", "0", "--steps", "3")  # no --preset: captions-folder, as with --init
    loaded = load_clip(files["vit"]).state_dict()
    model, tokenizer, ckpt = load_model(tmp_path / "checkpoint.pt")  # the run's checkpoint gives the model back
    assert model.state_dict().keys() == loaded.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded[key]), key
    assert model.config.transformer_heads == 4  # from open_clip_config.json, kept in the checkpoint
    assert tokenizer.vocab_size == 49408 and ckpt["extra"]["tokenizer"] == {"kind": "clip"}
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["preset"] == "captions-folder" and config["init"] == str(files["vit"])
    # the file's preprocessing and text interface, not the preset's 64 px and 32 tokens
    assert (config["image_size"], config["context_length"], config["tokenizer"]) == (32, 77, "clip")


def test_the_file_sets_the_architecture_and_unset_settings_take_finetuning_defaults(files):
    config, pretrained = resolve_config("captions-folder", {"init": str(files["vit"]), "data_dir": "x"})
    assert (config.lr, config.weight_decay) == (FINETUNE_DEFAULTS["lr"], FINETUNE_DEFAULTS["weight_decay"])
    assert config.warmup_steps == 100  # a tenth of the preset's 2000 steps, at most 100
    assert model_config(config, 49408) == pretrained.model.config  # the stored config rebuilds the file's shapes
    config, _ = resolve_config("captions-folder", {"init": str(files["vit"]), "lr": 3e-4, "warmup_steps": 7,
                                                   "steps": 20})
    assert (config.lr, config.warmup_steps, config.weight_decay) == (3e-4, 7, 0.1)  # given values win
    # a ViT-B/32 read from a file round-trips: named as such, and the saved config rebuilds it exactly
    vit_b32 = get_config("ViT-B/32")
    fitted = finetune_config(get_preset("captions-folder"), vit_b32, "clip", set())
    assert fitted.model == "ViT-B/32" and (fitted.image_size, fitted.context_length) == (224, 77)
    assert model_config(fitted, 49408) == vit_b32
    assert CLIPConfig(**json.loads(json.dumps(vars(vit_b32)))) == vit_b32


def test_an_fp16_checkpoint_is_trained_in_float32(files, tmp_path):
    half = torch.load(files["fp16"], weights_only=True)
    pretrained = load_pretrained(files["fp16"])
    assert all(p.dtype == torch.float32 for p in pretrained.model.parameters())
    for key, value in pretrained.model.state_dict().items():
        assert torch.equal(value, half[key].float()), key
    run(files, tmp_path, "fp16", "--lr", "1e-3", "--steps", "2", "--no-eval")
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values())
    assert all(math.isfinite(h["loss"]) for h in json.loads((tmp_path / "metrics.json").read_text())["history"])


def test_a_clipedu_checkpoint_brings_its_own_architecture_details(files, tmp_path):
    run(files, tmp_path, "vit", "--lr", "1e-3", "--steps", "1", "--no-eval")
    # no open_clip_config.json beside it: the heads (4, not 64 // 64) come from the checkpoint itself
    pretrained = load_pretrained(tmp_path / "checkpoint.pt")
    model, _, _ = load_model(tmp_path / "checkpoint.pt")
    assert pretrained.model.config == model.config and pretrained.tokenizer == {"kind": "clip"}


def test_a_short_run_lowers_the_loss_on_the_fixture(files, tmp_path):
    run(files, tmp_path, "vit", "--lr", "5e-4", "--steps", "30", "--warmup-steps", "3", "--seed", "0", "--no-eval")
    before = fixture_loss(load_clip(files["vit"]), files)
    after = fixture_loss(load_model(tmp_path / "checkpoint.pt")[0], files)
    assert before > math.log(10) - 0.3  # random weights: no better than chance among 10 captions
    assert after < before / 2  # measured (seed 0): 2.82 -> 0.40
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert len(history) == 30 and sum(h["loss"] for h in history[-5:]) / 5 < history[0]["loss"] - 0.3


def test_a_stopped_finetuning_run_resumes_to_the_straight_run(files, tmp_path):
    flags = ("--lr", "1e-3", "--steps", "4", "--lock-image", "--no-eval")
    run(files, tmp_path / "straight", "vit", *flags)
    run(files, tmp_path / "parts", "vit", *flags, "--stop-after", "2")
    run(files, tmp_path / "parts", "vit", *flags, "--resume")  # the same config: the file is read again
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt")["model"] for d in ("straight", "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ --lock-image (LiT)


def test_lock_image_keeps_the_image_tower_and_its_batchnorm_statistics(files, tmp_path):
    run(files, tmp_path / "lit", "resnet", "--lock-image", "--lr", "1e-3", "--steps", "3", "--no-eval")
    loaded = load_clip(files["resnet"]).state_dict()
    ckpt = load_checkpoint(tmp_path / "lit" / "checkpoint.pt")
    tuned = ckpt["model"]
    image_keys = [k for k in tuned if k.startswith("visual.")]
    assert any("running_mean" in k for k in image_keys)
    for key in image_keys:  # weights and BatchNorm buffers alike
        assert torch.equal(tuned[key], loaded[key]), key
    for key in ("token_embedding.weight", "transformer.resblocks.0.attn.in_proj_weight", "text_projection"):
        assert not torch.equal(tuned[key], loaded[key]), key  # the text tower did train
    in_optimizer = sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"])
    text_params = [n for n, _ in load_clip(files["resnet"]).named_parameters() if not n.startswith("visual.")]
    assert in_optimizer == len(text_params)
    # without the lock, one step moves the tower's weights and its running statistics
    run(files, tmp_path / "free", "resnet", "--lr", "1e-3", "--steps", "1", "--no-eval")
    free = load_checkpoint(tmp_path / "free" / "checkpoint.pt")["model"]
    assert not torch.equal(free["visual.bn1.running_mean"], loaded["visual.bn1.running_mean"])
    assert not torch.equal(free["visual.conv1.weight"], loaded["visual.conv1.weight"])


# ------------------------------------------------------------------ disagreements


def test_a_preset_or_setting_that_disagrees_with_the_file_says_what_to_do(files, tmp_path, capsys):
    args = ["--init", str(files["vit"]), "--out", str(tmp_path), "--no-progress"]
    assert main(["--preset", "shapes-tiny", *args]) == 2
    err = capsys.readouterr().err
    assert "tokenizer: the file has 'clip', the run asks for 'bpe'" in err
    assert "drop these settings, or use a preset that speaks the file's tokenizer (captions-folder" in err
    common = dict(init=str(files["vit"]), data_dir=str(files["data"]), progress=False)
    with pytest.raises(ValueError, match=r"image_size: the file has 32, the run asks for 64\n"
                                         r"  context_length: the file has 77, the run asks for 32"):
        train("captions-folder", tmp_path, image_size=64, context_length=32, **common)
    with pytest.raises(ValueError, match="transformer_layers: the file has 2, the run asks for 12"):
        train("captions-folder", tmp_path, model_overrides={"transformer_layers": 12}, **common)
    with pytest.raises(ValueError, match="loss: the file has 'clip', the run asks for 'siglip'"):
        train("captions-folder", tmp_path, loss="siglip", **common)
    assert not (tmp_path / "checkpoint.pt").exists()


# ------------------------------------------------------------------ WiSE-FT


def test_wise_ft_interpolates_floating_weights_and_keeps_fine_tuned_counters():
    zs = {"w": torch.tensor([1.0, 2.0, -4.0]), "steps": torch.tensor(3)}
    ft = {"w": torch.tensor([3.0, 6.0, 0.5]), "steps": torch.tensor(7)}
    for alpha, want in ((0.0, [1.0, 2.0, -4.0]), (1.0, [3.0, 6.0, 0.5]), (0.5, [2.0, 4.0, -1.75]),
                        (0.25, [1.5, 3.0, -2.875])):
        got = wise_ft(zs, ft, alpha)
        assert torch.equal(got["w"], torch.tensor(want)), alpha
        assert got["steps"].item() == 7  # a counter, not a weight: fine_tuned's
    half = wise_ft({"w": zs["w"].half(), "steps": zs["steps"]}, ft, 0.5)
    assert half["w"].dtype == torch.float32 and torch.equal(half["w"], torch.tensor([2.0, 4.0, -1.75]))


def test_wise_ft_of_models_is_a_new_model_between_the_two():
    torch.manual_seed(0)
    zero_shot, fine_tuned = (torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)) for _ in range(2))
    fine_tuned(torch.randn(4, 3))  # moves its running statistics and counter
    before = {k: v.clone() for k, v in fine_tuned.state_dict().items()}
    mid = wise_ft(zero_shot, fine_tuned, 0.5)
    assert isinstance(mid, torch.nn.Sequential) and mid is not fine_tuned
    for key, value in mid.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(value, 0.5 * zero_shot.state_dict()[key] + 0.5 * before[key]), key
    assert mid.state_dict()["1.num_batches_tracked"].item() == 1
    assert all(torch.equal(v, before[k]) for k, v in fine_tuned.state_dict().items())  # inputs untouched


def test_wise_ft_refuses_other_architectures_and_alphas_outside_0_1():
    a = {"w": torch.zeros(2), "b": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"keys differ: only in zero_shot \['b'\], only in fine_tuned \['v'\]"):
        wise_ft(a, {"w": torch.zeros(2), "v": torch.zeros(1)}, 0.5)
    with pytest.raises(ValueError, match=r"shapes differ: \['w: \[2\] vs \[3\]'\]"):
        wise_ft(a, {"w": torch.zeros(3), "b": torch.zeros(1)}, 0.5)
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="alpha must lie in"):
            wise_ft(a, a, alpha)
