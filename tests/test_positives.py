"""--positives compatible in the training loop: the matrix each step uses, the metrics a run reports, errors."""

import json

import pytest
import torch

from clipedu.data.meaning import caption_meaning
from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.loss import clip_loss, multi_positive_clip_loss
from clipedu.train.__main__ import main
from clipedu.train.config import apply_overrides, get_preset
from clipedu.train.distributed import DistState
from clipedu.train.loop import contrastive_loss, step_inputs, train
from clipedu.train.setup import load_data


@pytest.fixture
def setup(tiny_config):
    config = apply_overrides(get_preset("shapes-tiny"), **{**tiny_config, "positives": "compatible"})
    data = load_data(config)
    tokens = torch.zeros(len(data.train), 5, 4, dtype=torch.long)  # the tokens do not matter here
    return config, data, tokens


def test_each_step_marks_the_captions_true_of_each_image(setup):
    config, data, tokens = setup
    sampler = UniqueCaptionBatchSampler(data.train.captions, 16, seed=0)
    for step in range(3):
        images, chosen = sampler.batch(step)
        _, _, positives = step_inputs(data, tokens, sampler, config, step, DistState())
        texts = [data.train.captions[i][c] for i, c in zip(images.tolist(), chosen.tolist())]
        for i, image in enumerate(images.tolist()):
            truth = [int(data.train.attributes[a][image]) for a in ("color", "shape", "size", "position",
                                                                     "background")]
            for j, text in enumerate(texts):
                said = caption_meaning(text)
                want = i == j or all(s in (-1, v) for s, v in zip(said, truth))
                assert positives[i, j].item() == want, (text, truth)
        assert positives.sum() > 16  # a batch of 16 shapes captions holds false negatives


def test_diagonal_batches_have_no_matrix_and_the_loss_follows_it(setup, tiny_clip):
    config, data, _ = setup
    sampler = UniqueCaptionBatchSampler(data.train.captions, 16, seed=0)
    model = tiny_clip()
    tokenizer_tokens = torch.randint(1, 600, (len(data.train), 5, config.context_length))
    batch = step_inputs(data, tokenizer_tokens, sampler, config, 0, DistState())
    plain = step_inputs(data, tokenizer_tokens, sampler, apply_overrides(config, positives="diagonal"), 0, DistState())
    assert len(plain) == 2 and len(batch) == 3
    img, txt, scale = model(*batch[:2])
    assert contrastive_loss(model, *batch).item() == pytest.approx(
        multi_positive_clip_loss(img, txt, scale, batch[2]).item(), rel=1e-6)
    assert contrastive_loss(model, *plain).item() == pytest.approx(clip_loss(img, txt, scale).item(), rel=1e-6)


def test_a_compatible_run_reports_the_new_metrics(tmp_path, tiny_run):
    final = tiny_run(tmp_path, steps=4, positives="compatible")
    for key in ("fine_zeroshot_acc", "retrieval_r1", "false_negative_rate", "zeroshot_heldout_acc", "seconds"):
        assert key in final
    assert 0 < final["false_negative_rate"] <= 1
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["positives"] == "compatible"


def test_clear_errors(tmp_path, tiny_run):
    with pytest.raises(ValueError, match="unknown positives 'both'"):
        tiny_run(tmp_path, steps=1, positives="both")
    with pytest.raises(ValueError, match="needs the clip loss"):
        tiny_run(tmp_path, steps=1, positives="compatible", loss="siglip")
    with pytest.raises(ValueError, match="data='digits' has none"):
        train("digits", tmp_path, steps=1, positives="compatible", progress=False)


def test_command_line_flag(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("clipedu.train.__main__.train", lambda preset, out, **kw: seen.update(kw) or {"step": 1})
    assert main(["--out", str(tmp_path), "--positives", "compatible", "--no-progress"]) == 0
    assert seen["positives"] == "compatible"
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--positives", "some"])
