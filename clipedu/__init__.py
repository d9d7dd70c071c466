"""clipedu: CLIP built from scratch, one readable module per concept."""

__version__ = "0.1.0"
