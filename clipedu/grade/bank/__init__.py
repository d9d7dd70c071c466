"""The exercises of each notebook, one module per notebook (nbNN.py): references, cases, hints, points.

Cases are built by functions from seeded generators, so they are the same in
every run; the hidden ones ship only here, with the grader.
"""
