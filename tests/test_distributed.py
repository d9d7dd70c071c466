"""clipedu.train.distributed on 2 CPU processes (gloo) against the single-process loss over the global batch.

One module-scoped fixture runs this very file under torchrun (through
`clipedu.train.launch.launch`, `--standalone`: a local rendezvous on a free
port) with two ranks; each rank runs every scenario and saves what it saw; the tests compare those records with a single-process
reference computed here. Gradients follow the DDP convention: the objective is
the mean of the ranks' losses, DDP averages parameter gradients over ranks, and
each rank's feature gradients are K times d(global loss)/d(features).
"""

import contextlib
import io
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from clipedu.loss import clip_loss, multi_positive_clip_loss, siglip_loss
from clipedu.train.distributed import (
    DistState,
    all_reduce_mean,
    cleanup,
    distributed_clip_loss,
    distributed_siglip_loss,
    gather_features,
    init_distributed,
    local_clip_loss,
    local_siglip_loss,
    rank0_print,
    wrap_ddp,
)
from clipedu.train.launch import LaunchError, launch

WORLD = 2
N, D_IMG, D_TXT, D = 8, 6, 7, 5  # global batch 8 -> 4 pairs per rank
REPO = Path(__file__).resolve().parents[1]


class TinyCLIP(nn.Module):
    """Two linear 'encoders', L2 norm and a temperature: CLIP with the towers shrunk to one matrix."""

    def __init__(self, siglip: bool = False):
        super().__init__()
        torch.manual_seed(0)  # identical weights in every process and in the reference
        self.visual = nn.Linear(D_IMG, D, bias=False).double()
        self.text = nn.Linear(D_TXT, D, bias=False).double()
        t0, b0 = (math.log(10.0), -10.0) if siglip else (math.log(1 / 0.07), None)
        self.logit_scale = nn.Parameter(torch.tensor(t0, dtype=torch.float64))
        self.logit_bias = nn.Parameter(torch.tensor(b0, dtype=torch.float64)) if siglip else None

    def forward(self, images, texts):
        img = F.normalize(self.visual(images), dim=-1)
        txt = F.normalize(self.text(texts), dim=-1)
        out = (img, txt, self.logit_scale.exp())
        return out + (self.logit_bias,) if self.logit_bias is not None else out


def global_batch():
    g = torch.Generator().manual_seed(1234)
    return (torch.randn(N, D_IMG, generator=g, dtype=torch.float64),
            torch.randn(N, D_TXT, generator=g, dtype=torch.float64))


def global_positives():
    """A bool [N, N] with the diagonal and a few off-diagonal positives, some across the ranks' halves."""
    positives = torch.eye(N, dtype=torch.bool)
    for i, j in ((0, 1), (1, 0), (0, N - 1), (N - 2, 2), (3, 3 + N // 2)):
        positives[i, j] = True
    return positives


def run_step(model, images, texts, loss_fn):
    """One forward/backward; returns loss, feature grads and parameter grads."""
    out = model(images, texts)
    img, txt = out[0], out[1]
    img.retain_grad()
    txt.retain_grad()
    loss = loss_fn(*out)
    loss.backward()
    params = {k: p.grad.clone() for k, p in model.named_parameters()}
    return {"loss": loss.detach(), "img_grad": img.grad.clone(), "txt_grad": txt.grad.clone(),
            "params": {k.removeprefix("module."): v for k, v in params.items()},
            "img": img.detach(), "txt": txt.detach()}


def _worker(out_dir):
    """Body of each rank; this file is the script torchrun runs (see the `ranks` fixture)."""
    torch.set_num_threads(1)
    state = init_distributed("cpu")  # reads RANK, WORLD_SIZE, LOCAL_RANK set by torchrun
    rank, n = state.rank, N // WORLD
    images, texts = global_batch()
    mine = slice(rank * n, (rank + 1) * n)
    record = {"state": (state.rank, state.world_size, state.local_rank, state.backend)}

    def clip_case(**kw):
        return lambda i, t, s: distributed_clip_loss(i, t, s, state, **kw)

    cases = {
        "local_grad": (False, clip_case(local_loss=True, gather_with_grad=True)),
        "local_naive": (False, clip_case(local_loss=True, gather_with_grad=False)),
        "full_grad": (False, clip_case(local_loss=False, gather_with_grad=True)),
        "full_naive": (False, clip_case(local_loss=False, gather_with_grad=False)),
        "siglip": (True, lambda i, t, s, b: distributed_siglip_loss(i, t, s, b, state)),
        "multi_positive": (False, clip_case(positives=global_positives())),
        "multi_positive_full": (False, clip_case(local_loss=False, positives=global_positives())),
    }
    for name, (siglip, loss_fn) in cases.items():
        model = wrap_ddp(TinyCLIP(siglip), state)  # DDP averages parameter grads over ranks
        record[name] = run_step(model, images[mine], texts[mine], loss_fn)

    feats = F.normalize(images[mine][:, :D], dim=-1), F.normalize(texts[mine][:, :D], dim=-1)
    record["gathered"] = [t.clone() for t in gather_features(*feats, state)]
    record["mean_of_rank"] = all_reduce_mean(torch.tensor(float(rank + 1)), state)
    try:  # rank 0 brings 3 pairs, rank 1 brings 4
        short = images[mine][: n - 1 + rank, :D]
        distributed_clip_loss(short, short, 1.0, state)
        record["uneven_error"] = None
    except ValueError as err:
        record["uneven_error"] = str(err)
    torch.save(record, Path(out_dir) / f"rank{rank}.pt")

    print(f"hello from rank {rank} of {state.world_size}")
    mean_loss = all_reduce_mean(record["local_grad"]["loss"], state).item()
    rank0_print(f"mean_loss={mean_loss:.12f}")
    cleanup()


@pytest.fixture(scope="module")
def run_log(tmp_path_factory):
    """Run this file under torchrun with 2 CPU ranks (gloo), once for all tests; return records and log."""
    out = tmp_path_factory.mktemp("dist")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        launch([__file__, str(out)], nproc=WORLD, env={"PYTHONPATH": str(REPO)})
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], log.getvalue()


@pytest.fixture(scope="module")
def ranks(run_log):
    return run_log[0]


def reference(loss_fn, siglip=False):
    return run_step(TinyCLIP(siglip), *global_batch(), loss_fn)


def check_matches_single_process(ranks, case, ref):
    n = N // WORLD
    assert torch.stack([r[case]["loss"] for r in ranks]).mean().item() == pytest.approx(ref["loss"].item(), abs=1e-9)
    for r, rec in enumerate(ranks):
        rows = slice(r * n, (r + 1) * n)
        torch.testing.assert_close(rec[case]["img"], ref["img"][rows])
        torch.testing.assert_close(rec[case]["img_grad"] / WORLD, ref["img_grad"][rows], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(rec[case]["txt_grad"] / WORLD, ref["txt_grad"][rows], rtol=1e-6, atol=1e-9)
        for k, g in ref["params"].items():
            torch.testing.assert_close(rec[case]["params"][k], g, rtol=1e-6, atol=1e-9, msg=f"{case}: {k}")


def test_ranks_initialised_from_torchrun_env(ranks):
    assert [r["state"] for r in ranks] == [(0, 2, 0, "gloo"), (1, 2, 1, "gloo")]


@pytest.mark.parametrize("case", ["multi_positive", "multi_positive_full"])
def test_multi_positive_loss_in_processes_equals_one_process(ranks, case):
    positives = global_positives()
    check_matches_single_process(ranks, case, reference(lambda i, t, s: multi_positive_clip_loss(i, t, s, positives)))


def test_local_loss_equals_global_clip_loss_value_and_gradients(ranks):
    check_matches_single_process(ranks, "local_grad", reference(clip_loss))


def test_full_matrix_with_grad_gather_also_matches(ranks):
    check_matches_single_process(ranks, "full_grad", reference(clip_loss))


def test_naive_gather_gives_wrong_gradients_with_local_loss(ranks):
    ref = reference(clip_loss)
    rec = ranks[0]["local_naive"]
    # the loss value is still right: only the backward pass is broken
    assert torch.stack([r["local_naive"]["loss"] for r in ranks]).mean().item() == pytest.approx(ref["loss"].item(), abs=1e-9)
    for k in ("visual.weight", "text.weight"):
        rel = (rec["params"][k] - ref["params"][k]).norm() / ref["params"][k].norm()
        assert rel > 0.1, f"{k}: naive gather should lose the other ranks' gradient terms (rel err {rel:.3g})"


def test_naive_gather_full_matrix_scales_encoder_grads_by_one_over_k(ranks):
    # Every rank computes the whole loss, but only its own rows carry gradient:
    # after DDP's average the encoders see 1/K of the gradient, the temperature all of it.
    ref = reference(clip_loss)
    got = ranks[0]["full_naive"]["params"]
    for k in ("visual.weight", "text.weight"):
        torch.testing.assert_close(got[k], ref["params"][k] / WORLD, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got["logit_scale"], ref["params"]["logit_scale"], rtol=1e-6, atol=1e-9)


def test_siglip_distributed_equals_single_process(ranks):
    ref = reference(lambda i, t, s, b: siglip_loss(i, t, s, b), siglip=True)
    check_matches_single_process(ranks, "siglip", ref)


def test_gather_order_and_all_reduce_mean(ranks):
    images, texts = global_batch()
    want = F.normalize(images[:, :D], dim=-1), F.normalize(texts[:, :D], dim=-1)
    for rec in ranks:
        torch.testing.assert_close(rec["gathered"][0], want[0])
        torch.testing.assert_close(rec["gathered"][1], want[1])
        assert rec["mean_of_rank"].item() == 1.5


def test_uneven_batches_raise_a_clear_error(ranks):
    for rec in ranks:
        assert rec["uneven_error"] is not None and "drop_last" in rec["uneven_error"]


# ------------------------------------------------------------------ K ranks simulated in one process

def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1).requires_grad_()


@pytest.mark.parametrize("k", [1, 2, 4])
def test_local_losses_average_to_the_global_loss_and_gradient(k):
    # Slicing one tensor stands in for the gather: autograd then sums every
    # block's gradient onto the rows it came from, as the gather's backward does.
    img, txt, scale = unit(8, 5, 1), unit(8, 5, 2), torch.tensor(12.0, dtype=torch.float64, requires_grad=True)
    n = 8 // k
    mean = sum(local_clip_loss(img[r * n:(r + 1) * n], txt[r * n:(r + 1) * n], img, txt, scale, r)
               for r in range(k)) / k
    got = torch.autograd.grad(mean, (img, txt, scale))
    want_loss = clip_loss(img, txt, scale)
    want = torch.autograd.grad(want_loss, (img, txt, scale))
    assert mean.item() == pytest.approx(want_loss.item(), abs=1e-12)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)

    bias = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    mean = sum(local_siglip_loss(img[r * n:(r + 1) * n], txt, scale, bias, r) for r in range(k)) / k
    want_loss = siglip_loss(img, txt, scale, bias)
    assert mean.item() == pytest.approx(want_loss.item(), abs=1e-12)
    for g, w in zip(torch.autograd.grad(mean, (img, txt, scale, bias)),
                    torch.autograd.grad(want_loss, (img, txt, scale, bias))):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_local_multi_positive_losses_average_to_the_global_loss(k):
    img, txt, scale = unit(8, 5, 4), unit(8, 5, 5), torch.tensor(9.0, dtype=torch.float64, requires_grad=True)
    positives = torch.eye(8, dtype=torch.bool)
    positives[0, 5] = positives[6, 1] = positives[2, 3] = True
    n = 8 // k
    mean = sum(local_clip_loss(img[r * n:(r + 1) * n], txt[r * n:(r + 1) * n], img, txt, scale, r, positives)
               for r in range(k)) / k
    want_loss = multi_positive_clip_loss(img, txt, scale, positives)
    assert mean.item() == pytest.approx(want_loss.item(), abs=1e-12)
    for g, w in zip(torch.autograd.grad(mean, (img, txt, scale)), torch.autograd.grad(want_loss, (img, txt, scale))):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_local_loss_rejects_a_block_outside_the_global_batch():
    img = unit(8, 5, 3)
    with pytest.raises(ValueError, match="does not fit"):
        local_clip_loss(img[:4], img[:4], img, img, 1.0, rank=2)
    with pytest.raises(ValueError, match="does not fit"):
        local_siglip_loss(img[:3], img, 1.0, 0.0, rank=0)


# ------------------------------------------------------------------ world size 1, no process group

def test_world_size_one_is_the_plain_loss(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    state = init_distributed("cpu")
    assert state == DistState() and state.is_main
    assert not torch.distributed.is_initialized()
    images, texts = global_batch()
    img, txt = F.normalize(images[:, :D], dim=-1), F.normalize(texts[:, :D], dim=-1)
    assert distributed_clip_loss(img, txt, 14.0, state).item() == clip_loss(img, txt, 14.0).item()
    assert distributed_siglip_loss(img, txt, 10.0, -10.0, state).item() == siglip_loss(img, txt, 10.0, -10.0).item()
    assert all_reduce_mean(2.5, state).item() == 2.5
    assert wrap_ddp(nn.Linear(2, 2), state).__class__ is nn.Linear


def test_init_distributed_env_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        init_distributed("cpu")


# ------------------------------------------------------------------ the notebook launcher

def test_launch_streams_both_ranks_and_rank0_prints_once(run_log):
    ranks, log = run_log
    assert "hello from rank 0 of 2" in log and "hello from rank 1 of 2" in log
    lines = [ln for ln in log.splitlines() if "mean_loss=" in ln]
    assert len(lines) == 1, "rank0_print must print on rank 0 only"
    assert float(lines[0].split("=")[1]) == pytest.approx(reference(clip_loss)["loss"].item(), abs=1e-11)


def test_launch_failure_raises_with_log_tail(tmp_path, capsys):
    script = tmp_path / "bad.py"
    script.write_text("print('about to fail')\nraise RuntimeError('boom from the worker')\n")
    with pytest.raises(LaunchError) as info:
        launch([str(script)], nproc=1)
    assert info.value.returncode != 0
    assert "boom from the worker" in str(info.value)
    with pytest.raises(TypeError, match="list of strings"):
        launch("train.py", nproc=2)


if __name__ == "__main__":
    _worker(sys.argv[1])
