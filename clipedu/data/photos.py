"""Real photos: the fourteen that ship with the course, or any folder of your own.

The course world is drawn shapes; these are for the "now with real CLIP"
sections, where a released model looks at real pictures. `data/photos/` holds
fourteen public-domain or CC0 photos from scikit-image's sample data (a cat, a
coffee cup, an astronaut, a rocket, coins, ...), with a caption each in
`photos.csv` and the source and licence of each in `LICENSE`.

    photos = load_photos()                 # the shipped ones: .path, .label, .caption, .image()
    mine = load_photos("~/Pictures/trip")  # any folder: label = file name without extension
    pets = load_labelled("my_pets")        # my_pets/<label>/*.jpg: one folder per label (for probes)
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from clipedu.errors import ClipeduError
from clipedu.transforms import load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TABLE = "photos.csv"  # optional: file,label,caption


class PhotoError(ClipeduError, ValueError):
    """A photo folder that cannot be read: missing, empty, or with a broken photos.csv."""


@dataclass(frozen=True)
class Photo:
    path: Path
    label: str
    caption: str

    def image(self) -> Image.Image:
        """The photo as an RGB PIL image (read from disk each time)."""
        return load_image(self.path).convert("RGB")


def photo_dir() -> Path:
    """The shipped photos: `data/photos/` of a checkout, or where a wheel installed them."""
    checkout = Path(__file__).resolve().parents[2] / "data" / "photos"
    installed = Path(sys.prefix) / "share" / "clipedu" / "photos"  # pyproject's data-files
    for folder in (checkout, installed):
        if (folder / TABLE).is_file():
            return folder
    raise PhotoError(f"the course photos are not at {checkout} or {installed}; reinstall clipedu "
                     "(`pip install .` from the repository) or pass your own folder to load_photos(folder)")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_photos(folder: str | os.PathLike | None = None) -> list[Photo]:
    """The photos of `folder` (default: the shipped ones), sorted by file name.

    With a photos.csv (columns file,label,caption) its rows decide; without one every
    image file counts, labelled by its name ("red_bike.jpg" -> "red bike").
    """
    folder = photo_dir() if folder is None else Path(folder).expanduser()
    if not folder.is_dir():
        raise PhotoError(f"no folder {folder}: make it and put a few pictures in it (any format PIL reads)")
    table = folder / TABLE
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"file", "label"} <= set(rows[0]):
            raise PhotoError(f"{table} needs a header line `file,label,caption` and one row per photo")
        photos = []
        for row in rows:
            path = folder / row["file"]
            if not path.is_file():
                raise PhotoError(f"{table} lists {row['file']!r}, which is not in {folder}")
            photos.append(Photo(path, row["label"], row.get("caption") or row["label"]))
        return sorted(photos, key=lambda p: p.path.name)
    files = _images_in(folder)
    if not files:
        raise PhotoError(f"no pictures in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return [Photo(p, p.stem.replace("_", " ").replace("-", " "), p.stem.replace("_", " ")) for p in files]


def load_labelled(folder: str | os.PathLike) -> list[Photo]:
    """Photos sorted into one sub-folder per label (`folder/cat/1.jpg`, `folder/dog/7.png`, ...)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PhotoError(f"no folder {folder}: make one sub-folder per label and put photos in each")
    photos = [Photo(p, sub.name, sub.name) for sub in sorted(folder.iterdir()) if sub.is_dir()
              for p in _images_in(sub)]
    if not photos:
        raise PhotoError(f"no labelled photos in {folder}: expected {folder}/<label>/<photo>.jpg")
    return photos
