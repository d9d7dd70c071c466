"""The course's tooling: notebooks, exercise checks, figures, widgets (every notebook).

For the notebooks and their authors, not for training code: nothing else in
clipedu imports this package, and it may import anything.

    __main__.py   python -m clipedu.course [--check]: write notebooks/ from solutions/
    build.py      the generator: solution cells become exercises, checks stay
    checks.py     check_exercise (registry-backed, hints on request), check_function, check_value
    compare.py    re-exports clipedu.grade.compare (one message for the check cell and the grader)
    real.py       released CLIP in a notebook: load_real_clip, cached image and text embeddings
    viz.py        the course's figures: matrices, curves, training histories
    gallery.py    image figures: grids, search results, a ViT's patches
    maps.py       maps of the shared space (PCA, t-SNE, UMAP) and the modality gap
    widgets.py    ipywidgets playgrounds, each with a plain-figure twin (notebook 16)
"""
