"""GlobalBatchNorm2d on 2 CPU processes (gloo) against nn.BatchNorm2d on the whole batch in one process."""

import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from clipedu.resnet import ModifiedResNet
from clipedu.train.batchnorm import GlobalBatchNorm2d, convert_batchnorm
from clipedu.train.launch import launch

WORLD, N, C = 2, 6, 3
REPO = Path(__file__).resolve().parents[1]


def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, 4, 5, generator=g, dtype=torch.float64) * 3 + 1
    weights = torch.randn(N, C, 4, 5, generator=g, dtype=torch.float64)  # the loss is sum(y * weights)
    return x, weights


def layer(cls):
    torch.manual_seed(1)
    bn = cls(C).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    return bn


def step(bn, x, weights):
    x = x.clone().requires_grad_(True)
    y = bn(x)
    (y * weights).sum().backward()
    return {"y": y.detach(), "x_grad": x.grad, "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad,
            "running_mean": bn.running_mean.clone(), "running_var": bn.running_var.clone()}


def _worker(out_dir):
    torch.set_num_threads(1)
    from clipedu.train.distributed import cleanup, init_distributed

    state = init_distributed("cpu")
    x, weights = batch()
    mine = slice(state.rank * N // WORLD, (state.rank + 1) * N // WORLD)
    torch.save(step(layer(GlobalBatchNorm2d), x[mine], weights[mine]), Path(out_dir) / f"rank{state.rank}.pt")
    cleanup()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("bn")
    with contextlib.redirect_stdout(io.StringIO()):
        launch([__file__, str(out)], nproc=WORLD, env={"PYTHONPATH": str(REPO)})
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_two_ranks_normalise_with_the_global_batch_statistics(ranks):
    x, weights = batch()
    ref = step(layer(nn.BatchNorm2d), x, weights)
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), ref["y"])
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), ref["x_grad"])
    # each rank holds the gradient of its own share of the loss; the sum is the whole batch's (DDP averages it)
    for name in ("weight_grad", "bias_grad"):
        torch.testing.assert_close(ranks[0][name] + ranks[1][name], ref[name])
    for r in ranks:  # every rank updates its running statistics identically
        torch.testing.assert_close(r["running_mean"], ref["running_mean"])
        torch.testing.assert_close(r["running_var"], ref["running_var"])


def test_plain_batchnorm_per_slice_differs(ranks):
    # not vacuous: what two processes with nn.BatchNorm2d would compute instead
    x, weights = batch()
    per_slice = torch.cat([step(layer(nn.BatchNorm2d), x[i:i + N // 2], weights[i:i + N // 2])["y"]
                           for i in (0, N // 2)])
    assert not torch.allclose(per_slice, torch.cat([r["y"] for r in ranks]), atol=1e-3)


def test_one_process_and_eval_mode_are_plain_batchnorm():
    x, weights = batch()
    for train in (True, False):
        plain, glob = layer(nn.BatchNorm2d).train(train), layer(GlobalBatchNorm2d).train(train)
        a, b = step(plain, x, weights), step(glob, x, weights)
        for key in a:
            torch.testing.assert_close(b[key], a[key])


def test_convert_keeps_the_state_dict_and_the_outputs():
    torch.manual_seed(0)
    net = ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=2, input_resolution=32, width=8)
    x = torch.randn(4, 3, 32, 32)
    net.eval()
    before, sd = net(x), {k: v.clone() for k, v in net.state_dict().items()}
    params = list(net.parameters())
    convert_batchnorm(net)
    assert all(a is b for a, b in zip(params, net.parameters()))  # an optimiser built earlier still applies
    assert not any(type(m) is nn.BatchNorm2d for m in net.modules())
    assert sum(isinstance(m, GlobalBatchNorm2d) for m in net.modules()) > 5
    assert net.state_dict().keys() == sd.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())
    torch.testing.assert_close(net(x), before)
    assert not net.training  # the mode is kept


if __name__ == "__main__":
    _worker(sys.argv[1])
