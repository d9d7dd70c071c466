"""Training CLIP (notebook 08, scaled out in 13; paper 2.5): `python -m clipedu.train`.

For anyone who runs or changes training. Depends on core and data; experiments
build on it.

    config.py       TrainConfig and the named PRESETS: every setting of a run in one dataclass
    setup.py        what a config names, built: the data, the tokenizer, the initial model
    loop.py         step_inputs, train_step (the one step every loop takes), train (the course loop)
    evaluation.py   evaluate: zero-shot accuracy and Recall@K of a run
    state.py        a run's files: TrainState (checkpoint, metrics.json), load_model
    optim.py        AdamW parameter groups, warmup + cosine schedule
    checkpoint      lives in core (clipedu/checkpoint.py): weights.py reads clipedu checkpoints too
    cache.py        the course's own trained model, trained once and cached: load_course_model
    finetune.py     fine-tuning a trained model: a classifier end to end, or contrastive (notebook 12)
    wise.py         WiSE-FT: zero-shot and fine-tuned weights interpolated (wise_ft)
    distributed.py  torchrun set-up, features gathered with gradients, the local loss (notebook 13)
    batchnorm.py    BatchNorm statistics over the global batch under DDP
    launch.py       starting torchrun from a notebook, its log streamed into the cell
    __main__.py     the command line

    from clipedu.train import train
    metrics = train("shapes-tiny", "runs/tiny")

Fine-tuning released weights (--init reads every format clipedu.weights.load_clip reads):

    python -m clipedu.train --data my_captions/ --init ViT-B-32.pt --allow-torchscript --lock-image --out runs/ft
"""

from clipedu.train.cache import load_course_model
from clipedu.train.config import PRESETS, TrainConfig, get_preset
from clipedu.train.evaluation import evaluate
from clipedu.train.loop import train, train_step
from clipedu.train.state import load_model
from clipedu.train.wise import wise_ft

__all__ = ["train", "train_step", "evaluate", "TrainConfig", "PRESETS", "get_preset", "load_course_model",
           "load_model", "wise_ft"]
