"""The comparison the checks use lives in `clipedu.grade.compare` (the grader needs it too); re-exported here."""

from clipedu.grade.compare import compare, short_repr

__all__ = ["compare", "short_repr"]
