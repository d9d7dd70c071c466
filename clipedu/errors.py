"""The package's own exception: one base class for every error clipedu defines.

Each specific error also keeps the builtin base that fits it (`ValueError` for a
bad file or value, `RuntimeError` for a failed run), so `except ValueError` works
as before and `except ClipeduError` catches everything clipedu raises on purpose.
Wrong types raise the builtin `TypeError`, wrong values the builtin `ValueError`.
"""


class ClipeduError(Exception):
    """Base class of clipedu's own errors (CheckpointError, WeightsError, SolutionError, LaunchError)."""
