"""The data: captioned images for training and evaluation (notebook 02; paper 2.2).

For anyone who wants to see, change or replace what CLIP learns from. Depends on
the core modules only.

    contract.py   CaptionedImages: the in-memory (image, captions) set every other module speaks
    render.py     drawing anti-aliased shapes on plain and textured backgrounds
    shapes.py     ShapesWorld: the course's synthetic world, with held-out compositions and noisy captions
    scenes.py     scenes with several shapes: spatial relations and counts
    digits.py     scikit-learn's handwritten digits, with captions
    folders.py    your own data: caption folders and CSVs (Flickr, COCO), CIFAR
    sampler.py    UniqueCaptionBatchSampler: batches without duplicate captions; RandomBatchSampler
    meaning.py    what a caption states, and which images it is true of (the compatibility matrix)
    negatives.py  a batch's exact duplicates, semantic false negatives and hard negatives, measured
    hard_suite.py the hard evaluation suite: fine-grained zero-shot (864 classes), full-caption retrieval
"""
