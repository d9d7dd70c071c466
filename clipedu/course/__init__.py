"""The course's tooling: notebooks, exercise checks, figures, widgets (every notebook).

For the notebooks and their authors, not for training code: nothing else in
clipedu imports this package, and it may import anything.

    __main__.py   python -m clipedu.course [--check]: write notebooks/ from solutions/
    build.py      the generator: solution cells become exercises, checks stay
    checks.py     check_function, check_value: compare a student's answer with the reference
    viz.py        the course's figures: matrices, curves, training histories
    gallery.py    image figures: grids, search results, a ViT's patches
    maps.py       maps of the shared space (PCA, t-SNE, UMAP) and the modality gap
    widgets.py    ipywidgets playgrounds, each with a plain-figure twin (notebook 16)
"""
