"""Experiments beyond the course's main line: before CLIP, its limits, and studies after it.

For readers of notebooks 01, 14 and 17-20, and their benchmarks. Depends on core,
data and train, never the other way round.

    captioning.py   before CLIP: Show-and-Tell and Show-Attend-and-Tell captioners (01)
    limits.py       what CLIP cannot do: relations, counting, fine words, text in images (14; paper 6)
    objectives.py   the paper's Figure 2: caption prediction, bag of words, contrastive (17)
    efficiency.py   Figure 2 in miniature: the objectives trained on the same batches, images to a target (17)
    runs.py         short controlled runs: SigLIP and its bias, fixed temperatures (18-20)
    gap.py          the modality gap, measured, closed and widened (19)
    prompts.py      prompt engineering measured: templates, greedy ensembles, error bars (20; paper 3.1.4)
    positives.py    false negatives in a trained model's batches: loss floor, in-batch accuracy (08, 13)
    evidence.py     mean +/- standard error over seeds, paired differences, words as strong as the error bars
"""
