"""Real photos and real CLIP in a notebook: clipedu.data.photos and clipedu.course.real.

The model is a tiny random CLIP with CLIP's real tokenizer (vocabulary 49408),
saved as a state dict: every path of `load_real_clip` and `RealCLIP` runs on it
in well under a second. The photos are the fourteen that ship with the course.
"""

import csv
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipedu import weights
from clipedu.course import real as real_clip
from clipedu.course import widgets
from clipedu.course.real import HOW_TO, RealCLIP, load_real_clip, photo_grid, search_figure
from clipedu.data.photos import PhotoError, load_labelled, load_photos, photo_dir
from clipedu.model import CLIP, CLIPConfig
from clipedu.tokenizer import clip_tokenizer
from clipedu.transforms import preprocess

TINY = CLIPConfig(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                  context_length=16, vocab_size=49408, transformer_width=64, transformer_heads=1,
                  transformer_layers=1)


@pytest.fixture(scope="module")
def tiny() -> CLIP:
    torch.manual_seed(0)
    return CLIP(TINY).eval()


@pytest.fixture
def tiny_file(tmp_path, tiny):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def no_real_caches(empty_weight_caches, tmp_path, monkeypatch):
    """No weights on disk (conftest's empty_weight_caches), and embeddings cached in tmp."""
    monkeypatch.setenv(real_clip.CACHE_ENV, str(tmp_path / "embeddings"))


def counting(model: CLIP) -> dict:
    """Count the images and texts that reach the model's towers."""
    seen = {"images": 0, "texts": 0}
    image, text = model.encode_image, model.encode_text

    def encode_image(x):
        seen["images"] += len(x)
        return image(x)

    def encode_text(x):
        seen["texts"] += len(x)
        return text(x)

    model.encode_image, model.encode_text = encode_image, encode_text
    return seen


def fresh(tiny_file, tmp_path) -> RealCLIP:
    """A new RealCLIP on the same file and cache folder: nothing in memory, everything on disk."""
    model = CLIP(TINY)
    model.load_state_dict(torch.load(tiny_file, weights_only=True))
    return RealCLIP(model, tiny_file, cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------ the photos


def test_shipped_photos_match_their_table():
    photos = load_photos()
    with open(photo_dir() / "photos.csv", newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["file"])
    assert len(photos) == len(rows) == 14
    assert [(p.path.name, p.label, p.caption) for p in photos] == [(r["file"], r["label"], r["caption"]) for r in rows]
    cat = next(p for p in photos if p.label == "cat")
    assert cat.path.name == "cat.jpg"
    image = cat.image()
    assert image.mode == "RGB" and image.size == Image.open(cat.path).size


def test_folder_without_table(tmp_path):
    Image.new("RGB", (20, 10), "red").save(tmp_path / "red_bike.jpg")
    Image.new("L", (8, 8)).save(tmp_path / "A-dog.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "hidden.jpg")  # sub-folders are not searched
    photos = load_photos(tmp_path)
    assert [(p.path.name, p.label, p.caption) for p in photos] == [("A-dog.png", "A dog", "A-dog"),
                                                                   ("red_bike.jpg", "red bike", "red bike")]
    assert photos[0].image().mode == "RGB"


def test_labelled_folders(tmp_path):
    for label, names in {"cat": ["1.jpg", "2.png"], "dog": ["x.jpeg"]}.items():
        (tmp_path / label).mkdir()
        for name in names:
            Image.new("RGB", (8, 8)).save(tmp_path / label / name)
    (tmp_path / "README.txt").write_text("ignored")
    photos = load_labelled(tmp_path)
    assert [(p.path.name, p.label) for p in photos] == [("1.jpg", "cat"), ("2.png", "cat"), ("x.jpeg", "dog")]


def test_bad_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(PhotoError, match="no folder"):
        load_photos(tmp_path / "missing")
    with pytest.raises(PhotoError, match="no pictures"):
        load_photos(tmp_path)
    with pytest.raises(PhotoError, match="no labelled photos"):
        load_labelled(tmp_path)
    with pytest.raises(PhotoError, match="no folder"):
        load_labelled(tmp_path / "missing")
    (tmp_path / "photos.csv").write_text("name,what\nx.jpg,a thing\n")
    with pytest.raises(PhotoError, match="header"):
        load_photos(tmp_path)
    (tmp_path / "photos.csv").write_text("file,label,caption\nx.jpg,x,an x\n")
    with pytest.raises(PhotoError, match="'x.jpg'"):
        load_photos(tmp_path)


# ------------------------------------------------------------------ loading


def test_no_weights_prints_one_line_and_returns_none(capsys, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded without being asked")

    monkeypatch.setattr("clipedu.download.download_openai", no_download)
    assert load_real_clip() is None
    assert capsys.readouterr().out == HOW_TO + "\n"


def test_missing_weights_file_prints_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "nowhere.pt"))
    assert load_real_clip() is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "nowhere.pt" in out and "skipped" in out


def test_download_only_when_asked(tiny_file, capsys, monkeypatch):
    asked = []
    monkeypatch.setattr("clipedu.download.download_openai", lambda name: asked.append(name) or tiny_file)
    real = load_real_clip(download=True, device="cpu")
    assert asked == ["ViT-B/32"] and real.path == tiny_file
    assert capsys.readouterr().out.startswith(f"real CLIP from {tiny_file}: ")


def test_loads_weights_and_encodes_like_the_model(tiny, tiny_file, capsys, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(tiny_file))
    real = load_real_clip(device="cpu")
    assert capsys.readouterr().out.count("\n") == 1
    assert real.resolution == 32 and real.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)
    photos = load_photos()[:3]
    with torch.no_grad():  # by hand: CLIP's preprocessing, the tower, unit length
        expected = F.normalize(tiny.encode_image(torch.stack([preprocess(p.image(), 32) for p in photos])), dim=-1)
        tokens = clip_tokenizer()(["a cat", "a dog"], context_length=16)
        expected_text = F.normalize(tiny.encode_text(tokens), dim=-1)
    torch.testing.assert_close(real.encode_photos(photos), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(real.encode_texts(["a cat", "a dog"]), expected_text, rtol=0, atol=1e-5)
    assert real.cache_dir.parent == Path(os.environ[real_clip.CACHE_ENV])


# ------------------------------------------------------------------ the disk cache


def test_second_encode_reads_the_cache(tiny_file, tmp_path):
    photos, texts = load_photos()[:4], ["a cat", "a cup of coffee", "a rocket"]
    first = fresh(tiny_file, tmp_path)
    seen = counting(first.model)
    images, words = first.encode_photos(photos), first.encode_texts(texts)
    assert seen == {"images": 4, "texts": 3}
    again = fresh(tiny_file, tmp_path)  # a new kernel: only the disk remembers
    seen = counting(again.model)
    torch.testing.assert_close(again.encode_photos(photos), images, rtol=0, atol=0)
    torch.testing.assert_close(again.encode_texts(texts), words, rtol=0, atol=0)
    assert seen == {"images": 0, "texts": 0}
    again.encode_texts(texts + ["a horse"])  # only the new text is encoded
    assert seen == {"images": 0, "texts": 1}


def test_damaged_cache_is_rebuilt(tiny_file, tmp_path):
    photos = load_photos()[:2]
    expected = fresh(tiny_file, tmp_path).encode_photos(photos)
    cache = tmp_path / "cache"
    files = list(cache.rglob("images.pt"))
    assert len(files) == 1
    files[0].write_bytes(b"not a torch file")
    real = fresh(tiny_file, tmp_path)
    seen = counting(real.model)
    torch.testing.assert_close(real.encode_photos(photos), expected, rtol=0, atol=0)
    assert seen["images"] == 2
    assert len(torch.load(files[0], weights_only=True)) == 2  # written again, whole


def test_cache_is_keyed_by_the_image_bytes(tiny_file, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    cat = (photo_dir() / "cat.jpg").read_bytes()
    (folder / "a.jpg").write_bytes(cat)
    (folder / "b.jpg").write_bytes(cat)  # the same picture under another name
    real = fresh(tiny_file, tmp_path)
    seen = counting(real.model)
    twins = real.encode_photos(load_photos(folder))
    assert seen["images"] == 1 and torch.equal(twins[0], twins[1])
    (folder / "b.jpg").write_bytes((photo_dir() / "coffee.jpg").read_bytes())  # same name, new picture
    changed = real.encode_photos(load_photos(folder))
    assert seen["images"] == 2 and not torch.equal(changed[0], changed[1])
    assert torch.equal(changed[1], real.encode_photos([p for p in load_photos() if p.label == "coffee"])[0])


def test_new_weights_in_the_same_file_get_a_new_cache(tiny_file, tmp_path):
    before = fresh(tiny_file, tmp_path).cache_dir
    torch.manual_seed(1)
    torch.save(CLIP(TINY).state_dict(), tiny_file)  # other weights, same path
    os.utime(tiny_file, ns=(1, 1))  # the same size: only the time stamp tells the two files apart
    assert fresh(tiny_file, tmp_path).cache_dir != before


# ------------------------------------------------------------------ search


def test_search_ranks_photos_by_cosine(tiny_file, tmp_path):
    real = fresh(tiny_file, tmp_path)
    photos = load_photos()
    found = real.search("a cup of coffee", photos, k=3)
    cosines = (real.encode_photos(photos) @ real.encode_texts(["a cup of coffee"])[0]).tolist()
    ranked = sorted(range(len(photos)), key=lambda i: -cosines[i])[:3]
    assert [p for p, _ in found] == [photos[i] for i in ranked]
    assert [c for _, c in found] == pytest.approx([cosines[i] for i in ranked], abs=1e-6)
    assert len(real.search("a cat", photos, k=50)) == len(photos)
    with pytest.raises(ValueError, match="empty"):
        real.search("  ", photos)


def test_figures(tiny_file, tmp_path):
    real = fresh(tiny_file, tmp_path)
    photos = load_photos()
    grid = photo_grid(photos)
    assert len(grid.axes) == 14 and grid.axes[3].get_title().startswith("a close-up of a tabby")
    fig = search_figure(real, "a rocket", photos, k=4)
    best = real.search("a rocket", photos, k=4)
    assert len(fig.axes) == 5
    assert fig.axes[1].get_title() == f"#1  cosine {best[0][1]:.3f}\n{best[0][0].label}"


def test_photo_search_box_runs_a_query(tiny_file, tmp_path):
    real = fresh(tiny_file, tmp_path)
    photos = load_photos()
    box = widgets.photo_search_box(real, photos, query="a cup of coffee", k=3)
    assert box.figure is not None and len(box.figure.axes) == 4
    seen = counting(real.model)
    box.controls["query"].value = "a rocket at night"  # what pressing Enter does
    best = real.search("a rocket at night", photos, k=3)
    assert box.figure.axes[1].get_title().endswith(best[0][0].label)
    assert seen["images"] == 0  # the photos were encoded once, when the box was built
    box.controls["query"].value = ""
    assert box.figure is None
