"""Image-text datasets: the in-memory container and a user's own data.

Every dataset follows the course's data contract: item `i` is
`(image, captions)` with `image` a uint8 tensor [3, H, W] (RGB) and
`captions` a list of strings; datasets with classes also carry `labels`
(LongTensor [N]) and `class_names`.

- `CaptionedImages`: images held in one uint8 tensor (shapes, digits, CIFAR),
  so the training loop can index a whole batch at once.
- `CaptionFolder`: a folder of images with a caption file, in one of the
  common layouts (a CSV/TSV, Flickr8k, Flickr30k, COCO captions); images
  are read lazily from disk.
- `cifar_dataset`: CIFAR-10/100 as captioned images, for zero-shot tests.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from clipedu.data.contract import CaptionedImages
from clipedu.transforms import load_image, pil_to_tensor, resize_center_crop_pil

LAYOUTS = (
    "a CSV/TSV file with columns image,caption (one row per caption); "
    "Flickr8k's Flickr8k.token.txt; Flickr30k's results.csv; "
    "a COCO captions JSON (e.g. annotations/captions_train2017.json)"
)
# folders where each layout's images usually live, relative to the root
IMAGE_DIRS = ("", "images", "Images", "flickr30k_images", "flickr30k-images",
              "Flicker8k_Dataset", "Flickr8k_Dataset", "train2017", "val2017")


# ------------------------------------------------------------ caption files

def _read_table(path: Path) -> list[tuple[str, str]]:
    """(image, caption) rows of a CSV/TSV with a header naming both columns."""
    with open(path, newline="", encoding="utf-8") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",\t;|")
        except csv.Error:
            dialect = csv.excel_tab if path.suffix == ".tsv" else csv.excel
        reader = csv.reader(f, dialect)
        header = [h.strip().lower() for h in next(reader, [])]
        image_col = next((header.index(h) for h in ("image", "filename", "file_name", "filepath", "image_name",
                                                    "image_path", "path", "file") if h in header), None)
        caption_col = next((header.index(h) for h in ("caption", "text", "title", "comment", "sentence")
                            if h in header), None)
        if image_col is None or caption_col is None:
            raise ValueError(f"{path}: expected a header with columns 'image' and 'caption' "
                             f"(found {header}); rename the columns or pass format=")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) <= max(image_col, caption_col):
                raise ValueError(f"{path}, line {line}: expected {len(header)} fields, got {row}")
            rows.append((row[image_col].strip(), row[caption_col].strip()))
    return rows


def _read_flickr30k(path: Path) -> list[tuple[str, str]]:
    """Flickr30k's results.csv: `image_name| comment_number| comment`."""
    rows = []
    with open(path, encoding="utf-8") as f:
        next(f, None)  # header
        for line in f:
            parts = [p.strip() for p in line.rstrip("\n").split("|")]
            if len(parts) == 2:  # one known row lacks the second '|': "x.jpg| 4 A dog ..."
                parts = [parts[0], *parts[1].partition(" ")[::2]]
            if len(parts) >= 3 and parts[0]:
                rows.append((parts[0], "|".join(parts[2:]).strip()))
    return rows


def _read_flickr8k(path: Path) -> list[tuple[str, str]]:
    """Flickr8k.token.txt: `image.jpg#k<TAB>caption` per line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            key, tab, caption = line.rstrip("\n").partition("\t")
            if not tab or "#" not in key:
                raise ValueError(f"{path}, line {line_no}: expected 'image.jpg#0<TAB>caption', got {line!r}")
            rows.append((key.rsplit("#", 1)[0], caption.strip()))
    return rows


def _read_coco(path: Path) -> list[tuple[str, str]]:
    """COCO captions JSON: `images` [{id, file_name}] and `annotations` [{image_id, caption}]."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path} is not a COCO captions file: expected the keys 'images' and 'annotations'")
    names = {im["id"]: im["file_name"] for im in data["images"]}
    rows = []
    for ann in data["annotations"]:
        if ann["image_id"] not in names:
            raise ValueError(f"{path}: annotation {ann.get('id')} refers to image_id {ann['image_id']}, "
                             "which is not in 'images'")
        rows.append((names[ann["image_id"]], ann["caption"].strip()))
    return rows


READERS = {"csv": _read_table, "flickr30k": _read_flickr30k, "flickr8k": _read_flickr8k, "coco": _read_coco}


def _sniff_format(path: Path) -> str | None:
    """The caption format of `path` from its name and first line, or None if it is not one."""
    name = path.name.lower()
    if name.endswith(".json"):
        return "coco" if "caption" in name else None
    if name.endswith(".token.txt"):
        return None if "lemma" in name else "flickr8k"
    if name.endswith((".csv", ".tsv")) or name == "captions.txt":
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().lower()
        return "flickr30k" if "|" in first and "image_name" in first else "csv"
    return None


def find_caption_file(root: Path) -> tuple[Path, str]:
    """The single caption file in root (or root/annotations) and its format."""
    found = []
    for folder in (root, root / "annotations"):
        if folder.is_dir():
            found += [(p, fmt) for p in sorted(folder.iterdir()) if p.is_file() and (fmt := _sniff_format(p))]
    if not found:
        raise FileNotFoundError(f"no caption file found in {root}. CaptionFolder understands: {LAYOUTS}. "
                                "Or pass captions=PATH (and format=).")
    if len(found) > 1:
        raise ValueError(f"several caption files in {root}: {[str(p) for p, _ in found]}; "
                         "choose one with captions=PATH")
    return found[0]


class CaptionFolder(Dataset):
    """A user's image-caption data: images on disk plus one caption file.

    Layouts understood (auto-detected in `root`, or named with `captions=`
    and `format=` "csv" | "flickr8k" | "flickr30k" | "coco"): see LAYOUTS.
    Several rows for one image become several captions. Images are looked up
    next to the caption file, in root, or in the usual sub-folders (IMAGE_DIRS),
    or in `images=`. Items are (uint8 [3, image_size, image_size], captions),
    loaded lazily (short side resized bicubic, centre crop; image_size=None
    keeps the original size).
    """

    def __init__(self, root: str | os.PathLike, captions: str | os.PathLike | None = None,
                 format: str | None = None, images: str | os.PathLike | None = None,
                 image_size: int | None = 224, skip_missing: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}. CaptionFolder expects a folder "
                                    f"holding images and a caption file: {LAYOUTS}")
        if captions is None:
            self.caption_file, sniffed = find_caption_file(self.root)
        else:
            path = Path(captions)  # relative to root first, then to the working directory
            self.caption_file = self.root / path if (self.root / path).is_file() else path
            if not self.caption_file.is_file():
                raise FileNotFoundError(f"caption file not found: {self.caption_file}")
            sniffed = _sniff_format(self.caption_file)
        self.format = format or sniffed or "csv"
        if self.format not in READERS:
            raise ValueError(f"unknown caption format {self.format!r}; expected one of {list(READERS)}")
        rows = READERS[self.format](self.caption_file)
        if not rows:
            raise ValueError(f"{self.caption_file} lists no captions")

        grouped: dict[str, list[str]] = {}
        for name, caption in rows:  # dicts keep first-seen order
            grouped.setdefault(name, []).append(caption)
        self.image_dir = self._find_image_dir(list(grouped), images)
        paths = [self.image_dir / name for name in grouped]
        present = [p.is_file() for p in paths]
        missing = [p for p, ok in zip(paths, present) if not ok]
        if missing and not skip_missing:
            raise FileNotFoundError(f"{len(missing)} of {len(paths)} images listed in {self.caption_file} are "
                                    f"missing, e.g. {missing[0]}; add them, fix the list, or pass "
                                    "skip_missing=True to drop them")
        self.image_paths = [p for p, ok in zip(paths, present) if ok]
        self.captions = [caps for caps, ok in zip(grouped.values(), present) if ok]
        if not self.image_paths:
            raise FileNotFoundError(f"none of the images listed in {self.caption_file} exist")
        self.image_size = image_size

    def _find_image_dir(self, names: list[str], images: str | os.PathLike | None) -> Path:
        if images is not None:
            folder = Path(images) if Path(images).is_absolute() else self.root / images
            if not folder.is_dir():
                raise FileNotFoundError(f"image folder not found: {folder}")
            return folder
        # COCO's captions_train2017.json goes with a train2017/ folder
        split = self.caption_file.stem.split("_")[-1]
        candidates = [self.caption_file.parent, self.root, self.root / split] + [self.root / d for d in IMAGE_DIRS]
        probe = names[:20]
        best = max(candidates, key=lambda d: sum((d / n).is_file() for n in probe))
        return best if any((best / n).is_file() for n in probe) else self.root

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, list[str]]:
        image = load_image(self.image_paths[i])  # errors name the file
        if self.image_size is not None:
            image = resize_center_crop_pil(image, self.image_size)
        return pil_to_tensor(image), list(self.captions[i])

    def __repr__(self) -> str:
        return f"CaptionFolder({self.root}, {len(self)} images, format={self.format!r})"


# ------------------------------------------------------------------ CIFAR

# folder, train files, test files, meta file, class-name key, label key
CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "label_names", "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels"),
}


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file missing: {path}; re-extract the archive or pass download=True")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")  # the files are Python 2 pickles
    except Exception as err:
        raise ValueError(f"cannot read CIFAR file {path}: {err}; it is corrupt, re-download it") from err
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def cifar_dataset(root: str | os.PathLike, name: str = "cifar10", train: bool = False,
                  download: bool = False) -> CaptionedImages:
    """CIFAR-10/100 as captioned images (32x32) with class names, for zero-shot evaluation.

    Reads torchvision's extracted layout (`root/cifar-10-batches-py`,
    `root/cifar-100-python`). Downloads only when download=True.
    Captions are "a photo of a {class name}.".
    """
    if name not in CIFAR:
        raise ValueError(f"name must be one of {list(CIFAR)}, got {name!r}")
    folder, train_files, test_files, meta_file, names_key, labels_key = CIFAR[name]
    base = Path(root) / folder
    if not base.is_dir():
        if not download:
            raise FileNotFoundError(
                f"{name} not found: expected the folder {base}. Pass download=True to fetch it with torchvision "
                f"(about 170 MB), or extract the python version of the archive from "
                f"https://www.cs.toronto.edu/~kriz/cifar.html into {Path(root)}")
        import torchvision

        dataset_class = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        dataset_class(str(root), train=train, download=True)

    batches = [_unpickle(base / f) for f in (train_files if train else test_files)]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[labels_key], dtype=np.int64) for b in batches])
    class_names = [c.replace("_", " ") for c in _unpickle(base / meta_file)[names_key]]
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows are R, G, B planes
    article = {c: "an" if c[0] in "aeiou" else "a" for c in class_names}
    captions = [[f"a photo of {article[class_names[y]]} {class_names[y]}."] for y in labels]
    return CaptionedImages(images, captions, torch.from_numpy(labels), class_names)
