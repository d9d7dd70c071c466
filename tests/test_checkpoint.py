import os
import random
import subprocess

import numpy as np
import pytest
import torch

from clipedu.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    write_json,
)

CONFIG = {"width": 8, "layers": 2, "lr": 1e-3}


def small_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def trained_pair(seed=0):
    model = small_model(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    return model, opt


def test_round_trip_restores_model_optimizer_step_and_extra(tmp_path):
    model, opt = trained_pair()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model=model, optimizer=opt, step=3, config=CONFIG, extra={"note": "hi"})
    model2 = small_model(seed=1)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    ckpt = load_checkpoint(path, model2, opt2, expected_config=CONFIG)
    assert ckpt["step"] == 3 and ckpt["extra"] == {"note": "hi"} and ckpt["config"] == CONFIG
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    # one more identical step on both gives identical weights: the Adam moments came back
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_is_weights_only_loadable(tmp_path):
    model, opt = trained_pair()
    save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, step=1, config=CONFIG)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(raw["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_rng_states_round_trip(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_checkpoint(tmp_path / "c.pt", model=small_model(), step=0, config=CONFIG)
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng_state"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]


def test_state_of_a_ddp_like_wrapper_is_unwrapped(tmp_path):
    class Wrapper(torch.nn.Module):  # what DistributedDataParallel looks like
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = small_model()
    save_checkpoint(tmp_path / "c.pt", model=Wrapper(model), step=0, config=CONFIG)
    assert "0.weight" in load_checkpoint(tmp_path / "c.pt")["model"]


def test_crash_during_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model=small_model(), step=1, config=CONFIG)
    before = path.read_bytes()

    def crashing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model=small_model(seed=5), step=2, config=CONFIG)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # the temp file was cleaned up
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


def test_truncated_and_foreign_files_raise_clear_errors(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model=small_model(), step=1, config=CONFIG)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="ckpt.pt is not a readable checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="ckpt.pt is not a readable checkpoint"):
        load_checkpoint(path)
    torch.save(small_model().state_dict(), path)  # a bare state dict
    with pytest.raises(CheckpointError, match="not a clipedu checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_mismatch_lists_the_differing_fields(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model=small_model(), step=1, config=CONFIG)
    other = dict(CONFIG, width=16, lr=1e-3, extra_field=1)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, expected_config=other)
    msg = str(err.value)
    assert "width: checkpoint has 8, expected 16" in msg
    assert "extra_field: checkpoint has '<missing>', expected 1" in msg
    assert "lr" not in msg and "layers" not in msg


def test_write_json_is_atomic_and_readable(tmp_path):
    import json

    write_json(tmp_path / "m.json", {"a": [1, 2.5]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1, 2.5]}
    with pytest.raises(TypeError):
        write_json(tmp_path / "m.json", {"a": object()})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1, 2.5]}
    assert os.listdir(tmp_path) == ["m.json"]


def test_clipedu_errors_share_one_base_and_keep_their_builtin_one():
    from clipedu.course.build import SolutionError
    from clipedu.errors import ClipeduError
    from clipedu.train.launch import LaunchError
    from clipedu.weights_file import WeightsError

    for error, builtin in [(CheckpointError, RuntimeError), (WeightsError, ValueError),
                           (SolutionError, ValueError), (LaunchError, subprocess.CalledProcessError)]:
        assert issubclass(error, ClipeduError) and issubclass(error, builtin)
