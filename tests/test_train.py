import json
import math
import time

import pytest
import torch

from clipedu.checkpoint import CheckpointError, load_checkpoint
from clipedu.loss import clip_loss
from clipedu.train.__main__ import main
from clipedu.train.config import PRESETS, TrainConfig, get_preset
from clipedu.train.distributed import DistState
from clipedu.train.loop import contrastive_backward, train
from clipedu.train.setup import init_model

# tiny_config and tiny_run (tests/conftest.py): a model and data small enough for a run of about a second.


def weights(path):
    return load_checkpoint(path)["model"]


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'nope'; known presets: shapes-tiny"):
        get_preset("nope")
    assert set(PRESETS) >= {"shapes-tiny", "shapes-gpu", "digits", "captions-folder"}


def test_a_short_run_writes_metrics_and_a_loadable_checkpoint(tmp_path, tiny_run):
    final = tiny_run(tmp_path, steps=6, eval_every=3)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final"] == final
    for key in ("step", "seconds", "zeroshot_acc", "zeroshot_heldout_acc", "i2t_r1", "t2i_r1"):
        assert key in final
    assert final["step"] == 6 and final["seconds"] > 0
    steps = [h["step"] for h in metrics["history"]]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert "zeroshot_heldout_acc" in metrics["history"][2]  # the step-3 evaluation
    assert metrics["history"][-1]["images_seen"] == 6 * 16
    assert all(0 < h["lr"] <= 2e-3 for h in metrics["history"])
    assert all(math.isfinite(h["loss"]) for h in metrics["history"])
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 6 and "visual.conv1.weight" in ckpt["model"]
    assert ckpt["extra"]["tokenizer"]["kind"] == "bpe"
    assert ckpt["config"]["batch_size"] == 16


def test_loss_falls_below_chance_when_fitting_a_small_set(tmp_path, tiny_run):
    # 16 images, batch 16: every step sees the same images (with varying captions)
    tiny_run(tmp_path, steps=90, train_size=16, lr=5e-3, warmup_steps=5, init_temperature=0.2, evaluate_model=False)
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    first, last = history[0]["loss"], sum(h["loss"] for h in history[-5:]) / 5
    assert first == pytest.approx(math.log(16), abs=0.3)  # chance level at the start
    assert last < math.log(16) - 0.5


def test_temperature_is_clamped_after_every_step(tmp_path, tiny_run):
    tiny_run(tmp_path, steps=3, init_temperature=1 / 20, max_logit_scale=15.0, evaluate_model=False)
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    scales = [h["logit_scale"] for h in history]
    assert scales[0] == pytest.approx(15.0, abs=1e-4)  # 20 at init, clamped after the first step
    assert max(scales) <= 15.0 + 1e-4


def test_stop_then_resume_equals_a_straight_run(tmp_path, tiny_run):
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    tiny_run(straight, steps=12, evaluate_model=False, augment=True)
    stopped = tiny_run(parts, steps=12, stop_after=6, evaluate_model=False, augment=True)
    assert stopped == {"step": 6, "seconds": pytest.approx(stopped["seconds"]), "completed": False}
    assert load_checkpoint(parts / "checkpoint.pt")["step"] == 6
    tiny_run(parts, steps=12, resume=True, evaluate_model=False, augment=True)
    a, b = weights(straight / "checkpoint.pt"), weights(parts / "checkpoint.pt")
    assert a.keys() == b.keys()
    for key in a:  # bit-identical: every random choice is a function of (seed, step)
        assert torch.equal(a[key], b[key]), key
    history = json.loads((parts / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == list(range(1, 13))


def test_resume_with_another_config_names_the_fields(tmp_path, tiny_run):
    tiny_run(tmp_path, steps=4, evaluate_model=False)
    with pytest.raises(CheckpointError, match=r"lr: checkpoint has 0.002, expected 0.001"):
        tiny_run(tmp_path, steps=4, lr=1e-3, resume=True, evaluate_model=False)
    # run-control settings may change
    tiny_run(tmp_path, steps=4, save_every=2, resume=True, evaluate_model=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        tiny_run(tmp_path / "empty", steps=4, resume=True)


def test_clear_errors_for_bad_settings(tmp_path, tiny_run):
    with pytest.raises(ValueError, match="batch larger than the dataset: batch_size=500"):
        tiny_run(tmp_path, steps=2, batch_size=500)
    with pytest.raises(ValueError, match="needs your data: pass --data DIR"):
        train("captions-folder", tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="data folder not found: /no/such/dir"):
        train("captions-folder", tmp_path, data_dir="/no/such/dir", progress=False)
    with pytest.raises(TypeError, match="unknown TrainConfig field"):
        tiny_run(tmp_path, stepz=3)
    with pytest.raises(ValueError, match="divide evenly"):
        tiny_run(tmp_path, steps=2, accum_steps=3)


def test_accumulated_gradient_equals_full_batch_gradient(tiny_config):
    cfg = TrainConfig(**{**tiny_config, "vocab_size": 600})
    model = init_model(cfg, vocab_size=600)
    images = torch.randn(12, 3, 24, 24)
    tokens = torch.randint(1, 500, (12, 24))
    tokens[:, 10] = 599  # EOT (largest id) ends each text
    tokens[:, 11:] = 0
    no_autocast = torch.autocast("cpu", enabled=False)

    def grads(accum):
        model.zero_grad()
        loss = contrastive_backward(model, images, tokens, accum_steps=accum, dist=DistState(), autocast=no_autocast)
        return loss, {n: p.grad.clone() for n, p in model.named_parameters()}

    full_loss, full = grads(1)
    img, txt, scale = model(images, tokens)
    assert full_loss == pytest.approx(clip_loss(img, txt, scale).item(), rel=1e-6)
    for accum in (3, 4):
        loss, acc = grads(accum)
        assert loss == pytest.approx(full_loss, rel=1e-5)
        for name in full:
            assert torch.allclose(acc[name], full[name], rtol=1e-4, atol=1e-6), name
    # the naive alternative (separate losses per micro-batch) gives a different gradient
    model.zero_grad()
    for part in range(3):
        i, t, s = model(images[4 * part:4 * part + 4], tokens[4 * part:4 * part + 4])
        (clip_loss(i, t, s) / 3).backward()
    assert not torch.allclose(model.text_projection.grad, full["text_projection"], atol=1e-6)


def test_command_line_runs_and_reports_errors(tmp_path, capsys):
    assert main(["--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["--preset", "captions-folder", "--out", str(tmp_path), "--data", str(tmp_path / "x")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    # a real (short) run of the default preset: stop after step 1, then resume to step 2
    args = ["--out", str(tmp_path / "cli"), "--steps", "2", "--no-eval", "--no-progress"]
    assert main(args + ["--stop-after", "1"]) == 0
    assert "completed=False" in capsys.readouterr().out
    assert main(args + ["--resume"]) == 0
    assert "step=2" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "cli" / "checkpoint.pt")["step"] == 2


def test_interrupt_saves_the_last_completed_step(tmp_path, monkeypatch, tiny_run):
    import clipedu.train.loop as train_module

    real = train_module.contrastive_backward
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # Ctrl-C during the 4th step's backward pass
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "contrastive_backward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(tmp_path, steps=10)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3
    monkeypatch.undo()
    final = tiny_run(tmp_path, steps=10, resume=True, evaluate_model=False)
    assert final["step"] == 10


def test_load_course_model_trains_once_then_loads(tmp_path, monkeypatch, tiny_config):
    import clipedu.train.loop as train_module
    from clipedu.train.cache import load_course_model

    cache = tmp_path / "cache"
    model, tokenizer, metrics = load_course_model("shapes-tiny", cache, progress=False, **tiny_config, steps=3)
    assert metrics["step"] == 3 and "zeroshot_heldout_acc" in metrics
    assert not model.training and model.context_length == 24
    tokens = tokenizer(["a red circle"], context_length=24)
    assert model.encode_text(tokens).shape == (1, 32)

    def no_training(*args, **kwargs):
        raise AssertionError("should have loaded the cached model")

    monkeypatch.setattr(train_module, "train", no_training)
    again, _, metrics2 = load_course_model("shapes-tiny", cache, progress=False, **tiny_config, steps=3)
    assert metrics2 == metrics
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    monkeypatch.undo()

    (cache / "checkpoint.pt").write_bytes(b"garbage")  # a corrupt cache is rebuilt
    _, _, metrics3 = load_course_model("shapes-tiny", cache, progress=False, **tiny_config, steps=3)
    assert metrics3["step"] == 3
    _, _, metrics4 = load_course_model("shapes-tiny", cache, progress=False, **tiny_config, steps=4)  # other settings
    assert metrics4["step"] == 4


def test_a_second_load_or_train_waits_for_the_first_then_loads(tmp_path, capsys, tiny_config):
    """Two notebooks asking for the course model at once: one trains, the other waits and loads."""
    import threading

    from clipedu.train.cache import cache_lock, load_course_model

    cache = tmp_path / "cache"
    result = {}
    with cache_lock(cache):  # as if another kernel were training right now
        waiter = threading.Thread(target=lambda: result.update(
            out=load_course_model("shapes-tiny", cache, progress=False, **tiny_config, steps=3)))
        waiter.start()
        for _ in range(300):  # up to 30 s for the waiter to find the lock taken and say so
            err = capsys.readouterr().err
            if "waiting" in err:
                break
            time.sleep(0.1)
        assert "another process is training" in err
        assert not (cache / "checkpoint.pt").exists() and waiter.is_alive()
    waiter.join(timeout=120)
    assert not waiter.is_alive() and result["out"][2]["step"] == 3


def test_captions_folder_trains_on_a_users_csv(tmp_path, tiny_config):
    from PIL import Image

    folder = tmp_path / "mydata"
    folder.mkdir()
    rows = ["image,caption"]
    colours = {"red": (220, 30, 30), "blue": (30, 80, 230), "green": (40, 180, 50)}
    for i in range(30):
        name = list(colours)[i % 3]
        Image.new("RGB", (40, 30), colours[name]).save(folder / f"img{i}.png")
        rows += [f"img{i}.png,a {name} picture number {i}", f"img{i}.png,plain {name} {i}"]
    (folder / "captions.csv").write_text("\n".join(rows) + "\n")
    final = train("captions-folder", tmp_path / "run", data_dir=str(folder), progress=False,
                  **{**tiny_config, "batch_size": 8, "steps": 2, "eval_size": 5})
    assert final["step"] == 2
    assert {"i2t_r1", "t2i_r1"} <= set(final) and "zeroshot_acc" not in final  # no classes: retrieval only
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["extra"]["tokenizer"] == {"kind": "clip"}  # the preset's choice: CLIP's own vocabulary
    assert ckpt["model"]["token_embedding.weight"].shape[0] == 49408


def test_the_course_preset_follows_the_device(monkeypatch):
    from clipedu.train import config as presets

    monkeypatch.setattr(presets.torch.cuda, "is_available", lambda: False)
    assert presets.course_preset() == "shapes-tiny"
    monkeypatch.setattr(presets.torch.cuda, "is_available", lambda: True)
    assert presets.course_preset() == "shapes-gpu"
    gpu, cpu = get_preset("shapes-gpu"), get_preset("shapes-tiny")
    assert gpu.image_size >= cpu.image_size and gpu.batch_size > cpu.batch_size  # the larger configuration
    assert gpu.model_overrides["vision_width"] > cpu.model_overrides["vision_width"]
    assert gpu.positives == cpu.positives  # the same targets
    assert gpu.model == cpu.model  # the same family, which the CPU runs show to generalise


def test_the_progress_bar_redraws_at_most_once_a_second(tmp_path, capsys, monkeypatch, tiny_config):
    """A bar that redraws every step floods a notebook kernel's output channel; nbval then loses the
    cell's end and times out (this failed CI once). Count the redraws of a fast 60-step run."""
    import clipedu.train.loop as train_module
    monkeypatch.setattr(train_module, "PROGRESS_INTERVAL", 30.0)  # longer than the run: start, end (+ tqdm monitor)
    train("shapes-tiny", tmp_path, progress=True, **{**tiny_config, "eval_every": 0, "steps": 60})
    redraws = capsys.readouterr().err.count("\r")
    assert 1 <= redraws <= 10, f"the bar redrew {redraws} times in a 60-step run"  # redrawn every step: 62
