"""WiSE-FT (Wortsman et al. 2022): a weight-space ensemble of a zero-shot and a fine-tuned CLIP.

Fine-tuning raises accuracy on the new data but can lower it under distribution
shift. Interpolating the two sets of weights,

    theta(alpha) = (1 - alpha) * theta_zero_shot + alpha * theta_fine_tuned,

keeps much of both: the paper finds that one model (alpha near 0.5) beats each
end on the shifted test sets. It works because fine-tuning from a pretrained
start stays in one linearly connected basin, so the midpoint is a good model too.

    from clipedu.train.wise import wise_ft
    model = wise_ft(load_clip("ViT-B-32.safetensors"), fine_tuned, alpha=0.5)
"""

import copy

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]


def interpolate(zero_shot: StateDict, fine_tuned: StateDict, alpha: float) -> StateDict:
    """theta = (1 - alpha) * zero_shot + alpha * fine_tuned for every floating tensor.

    Both state dicts must hold the same keys with the same shapes. Non-float entries (BatchNorm's
    num_batches_tracked) are counters, not weights: they come from fine_tuned. Each result has
    fine_tuned's dtype and device; the sum is computed in float32 at least (fp16 checkpoints).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (0: the zero-shot weights, 1: the fine-tuned ones), got {alpha}")
    if zero_shot.keys() != fine_tuned.keys():
        only_zs, only_ft = sorted(zero_shot.keys() - fine_tuned.keys()), sorted(fine_tuned.keys() - zero_shot.keys())
        raise ValueError(f"WiSE-FT needs two models of one architecture; the keys differ: only in zero_shot "
                         f"{only_zs[:5]}, only in fine_tuned {only_ft[:5]}. Interpolate a fine-tuned model "
                         "with the model it was fine-tuned from")
    shapes = [f"{k}: {list(zero_shot[k].shape)} vs {list(v.shape)}" for k, v in fine_tuned.items()
              if zero_shot[k].shape != v.shape]
    if shapes:
        raise ValueError(f"WiSE-FT needs two models of one architecture; shapes differ: {shapes[:5]}")
    out = {}
    for key, ft in fine_tuned.items():
        if not ft.is_floating_point():
            out[key] = ft.clone()
            continue
        dtype = torch.promote_types(ft.dtype, torch.float32)
        zs = zero_shot[key].to(device=ft.device, dtype=dtype)
        out[key] = ((1 - alpha) * zs + alpha * ft.to(dtype)).to(ft.dtype)
    return out


def wise_ft(zero_shot: nn.Module | StateDict, fine_tuned: nn.Module | StateDict,
            alpha: float = 0.5) -> nn.Module | StateDict:
    """The WiSE-FT interpolation of two models, or of two state dicts (see `interpolate`).

    Returns the kind fine_tuned is: a state dict, or a new model (a copy of fine_tuned, in its
    mode, holding the interpolated weights). Neither input is modified. alpha=0 gives the
    zero-shot weights, alpha=1 the fine-tuned ones.
    """
    zs = zero_shot.state_dict() if isinstance(zero_shot, nn.Module) else zero_shot
    if not isinstance(fine_tuned, nn.Module):
        return interpolate(zs, fine_tuned, alpha)
    weights = interpolate(zs, fine_tuned.state_dict(), alpha)
    model = copy.deepcopy(fine_tuned)
    model.load_state_dict(weights)
    return model
