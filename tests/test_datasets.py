"""A user's own data (every caption-file layout, CIFAR) and the digits dataset."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from clipedu.data.contract import CaptionedImages
from clipedu.data.digits import DIGIT_WORDS, digits_dataset
from clipedu.data.folders import CaptionFolder, cifar_dataset

COLORS = {"red.png": (220, 20, 20), "green.jpg": (20, 200, 40), "blue.png": (30, 40, 230)}


def write_images(folder, names=COLORS):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        size = (40 + 10 * i, 30)  # different sizes and aspect ratios
        Image.new("RGB", size, COLORS[name]).save(folder / name)


def check_items(dataset, expected_captions, size=24):
    assert len(dataset) == len(expected_captions)
    for i in range(len(dataset)):
        image, captions = dataset[i]
        assert image.dtype == torch.uint8 and image.shape == (3, size, size)
        name = dataset.image_paths[i].name
        assert captions == expected_captions[name]
        mean = image.float().mean(dim=(1, 2))
        assert torch.allclose(mean, torch.tensor(COLORS[name], dtype=torch.float), atol=4)  # JPEG is lossy


def test_csv_layout_with_several_captions_per_image(tmp_path):
    write_images(tmp_path)
    (tmp_path / "captions.csv").write_text(
        'image,caption\nred.png,a red square\ngreen.jpg,"a green patch, flat"\nred.png,something red\n'
        "blue.png,blue\n")
    data = CaptionFolder(tmp_path, image_size=24)
    assert data.format == "csv"
    check_items(data, {"red.png": ["a red square", "something red"], "green.jpg": ["a green patch, flat"],
                       "blue.png": ["blue"]})


def test_tsv_layout_with_images_subfolder(tmp_path):
    write_images(tmp_path / "images")
    (tmp_path / "data.tsv").write_text("filepath\ttitle\nred.png\tred one\nblue.png\tblue one\n")
    data = CaptionFolder(tmp_path, image_size=24)
    assert data.image_dir == tmp_path / "images"
    check_items(data, {"red.png": ["red one"], "blue.png": ["blue one"]})


def test_flickr8k_layout(tmp_path):
    write_images(tmp_path / "Flicker8k_Dataset")
    lines = [f"{name}#{k}\t{name[:-4]} caption {k}" for name in COLORS for k in range(5)]
    (tmp_path / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "Flickr8k.lemma.token.txt").write_text("ignored#0\tnot used\n")
    (tmp_path / "Flickr_8k.trainImages.txt").write_text("red.png\n")
    data = CaptionFolder(tmp_path, image_size=24)
    assert data.format == "flickr8k"
    check_items(data, {name: [f"{name[:-4]} caption {k}" for k in range(5)] for name in COLORS})


def test_flickr30k_layout_including_its_malformed_row(tmp_path):
    write_images(tmp_path / "flickr30k_images")
    text = ("image_name| comment_number| comment\n"
            "red.png| 0| A red thing .\n"
            "red.png| 1| Red , flat .\n"
            "blue.png| 0| A blue thing .\n"
            "blue.png| 4 A dog runs .\n")  # the real file has one row like this
    (tmp_path / "results.csv").write_text(text)
    data = CaptionFolder(tmp_path, image_size=24)
    assert data.format == "flickr30k"
    check_items(data, {"red.png": ["A red thing .", "Red , flat ."], "blue.png": ["A blue thing .", "A dog runs ."]})


def test_coco_layout(tmp_path):
    write_images(tmp_path / "val2017")
    coco = {"images": [{"id": 7, "file_name": "green.jpg"}, {"id": 9, "file_name": "blue.png"},
                       {"id": 11, "file_name": "red.png"}],  # red has no caption: left out
            "annotations": [{"id": 1, "image_id": 9, "caption": "blue sky"},
                            {"id": 2, "image_id": 7, "caption": "green grass "},
                            {"id": 3, "image_id": 9, "caption": "a blue card"}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps(coco))
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")  # not a caption file
    data = CaptionFolder(tmp_path, image_size=24)
    assert data.format == "coco" and data.image_dir == tmp_path / "val2017"
    check_items(data, {"blue.png": ["blue sky", "a blue card"], "green.jpg": ["green grass"]})


def test_explicit_caption_path_and_format(tmp_path):
    write_images(tmp_path / "pics")
    (tmp_path / "notes.txt").write_text("image|caption\nred.png|a red card\n")
    data = CaptionFolder(tmp_path, captions="notes.txt", format="csv", images="pics", image_size=24)
    check_items(data, {"red.png": ["a red card"]})
    data = CaptionFolder(tmp_path, captions=tmp_path / "notes.txt", images=tmp_path / "pics", image_size=None)
    assert data[0][0].shape == (3, 30, 40)  # original size kept


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*CSV"):
        CaptionFolder(tmp_path / "nowhere")
    write_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="no caption file found"):
        CaptionFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="caption file not found.*missing.csv"):
        CaptionFolder(tmp_path, captions="missing.csv")

    (tmp_path / "captions.csv").write_text("file,words\nred.png,red\n")
    with pytest.raises(ValueError, match="'image' and 'caption'"):
        CaptionFolder(tmp_path)

    (tmp_path / "captions.csv").write_text("image,caption\nred.png,red\nghost.png,a ghost\n")
    with pytest.raises(FileNotFoundError, match="ghost.png.*skip_missing"):
        CaptionFolder(tmp_path)
    data = CaptionFolder(tmp_path, skip_missing=True, image_size=24)
    assert [p.name for p in data.image_paths] == ["red.png"]

    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "captions.csv").write_text("image,caption\nbroken.png,broken\n")
    data = CaptionFolder(tmp_path)
    with pytest.raises(ValueError, match="broken.png"):
        data[0]

    (tmp_path / "more.tsv").write_text("image\tcaption\nred.png\tred\n")
    with pytest.raises(ValueError, match="several caption files"):
        CaptionFolder(tmp_path)


def test_coco_json_without_expected_keys(tmp_path):
    (tmp_path / "captions_train2017.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="'images' and 'annotations'"):
        CaptionFolder(tmp_path)


def test_captioned_images_validates():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="caption lists"):
        CaptionedImages(images, [["a"]])
    with pytest.raises(ValueError, match="uint8"):
        CaptionedImages(images.float(), [["a"], ["b"]])
    data = CaptionedImages(images, [["a"], ["b", "c"]], torch.tensor([0, 1]), ["x", "y"])
    assert data[1][1] == ["b", "c"] and len(data) == 2


# ------------------------------------------------------------------- CIFAR

def write_fake_cifar(root, name, n=6):
    """Tiny batches in torchvision's (pickled dict) format."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, names = root / "cifar-10-batches-py", ["airplane", "automobile", "bird"]
        files, label_key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels"
        (folder).mkdir(parents=True)
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": names, "num_cases_per_batch": n}, f, protocol=2)
    else:
        folder, names = root / "cifar-100-python", ["apple", "aquarium_fish", "bear"]
        files, label_key = ["train", "test"], "fine_labels"
        folder.mkdir(parents=True)
        with open(folder / "meta", "wb") as f:
            pickle.dump({"fine_label_names": names, "coarse_label_names": ["x"]}, f, protocol=2)
    batches = {}
    for file in files:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 3, n).tolist()
        with open(folder / file, "wb") as f:
            pickle.dump({"data": data, label_key: labels, "batch_label": file}, f, protocol=2)
        batches[file] = (data, labels)
    return batches


def test_cifar10_from_torchvision_layout(tmp_path):
    batches = write_fake_cifar(tmp_path, "cifar10")
    test = cifar_dataset(tmp_path, "cifar10", train=False)
    data, labels = batches["test_batch"]
    assert test.images.shape == (6, 3, 32, 32) and test.images.dtype == torch.uint8
    # row layout: 1024 red, then 1024 green, then 1024 blue values, row-major
    assert test.images[2, 1, 3, 5].item() == data[2, 1024 + 3 * 32 + 5]
    assert test.labels.tolist() == labels
    assert test.class_names == ["airplane", "automobile", "bird"]
    assert all(c[0] == f"a photo of a{'n' if test.class_names[y][0] in 'aeiou' else ''} {test.class_names[y]}."
               for c, y in zip(test.captions, labels))
    train = cifar_dataset(tmp_path, "cifar10", train=True)
    assert len(train) == 30


def test_cifar100_names_become_prompts(tmp_path):
    write_fake_cifar(tmp_path, "cifar100")
    test = cifar_dataset(tmp_path, "cifar100")
    assert test.class_names == ["apple", "aquarium fish", "bear"]
    assert len(test) == 6


def test_cifar_missing_copy_explains_and_does_not_download(tmp_path, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    with pytest.raises(FileNotFoundError, match="download=True"):
        cifar_dataset(tmp_path, "cifar10")
    with pytest.raises(ValueError, match="cifar10"):
        cifar_dataset(tmp_path, "svhn")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="test_batch"):
        cifar_dataset(tmp_path, "cifar10")


# ------------------------------------------------------------------ digits

def test_digits_dataset():
    from sklearn.datasets import load_digits

    train, test = digits_dataset("train"), digits_dataset("test")
    assert len(train) + len(test) == 1797
    assert set(train.attributes["index"].tolist()).isdisjoint(test.attributes["index"].tolist())
    assert train.images.shape[1:] == (3, 32, 32) and train.images.dtype == torch.uint8
    assert train.class_names == DIGIT_WORDS == ["zero", "one", "two", "three", "four", "five", "six", "seven",
                                               "eight", "nine"]
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 30 and counts.max() <= 40  # stratified ~20%

    original = load_digits()
    idx = train.attributes["index"]
    assert torch.equal(train.labels, torch.from_numpy(original.target[idx.numpy()]))
    # shrinking our image back to 8x8 recovers the original (ink = dark)
    small = torch.nn.functional.avg_pool2d(train.images[:, :1].float(), 4)[:, 0].flatten(1)
    ink = torch.from_numpy(original.images[idx.numpy()]).flatten(1).float()
    corr = torch.corrcoef(torch.stack([-small.flatten(), ink.flatten()]))[0, 1]
    assert corr > 0.9
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # grey: R = G = B

    for caps, y in zip(train.captions[:200], train.labels[:200].tolist()):
        assert len(caps) == 5
        assert all(str(y) in c or DIGIT_WORDS[y] in c.split() for c in caps)

    again = digits_dataset("train")
    assert torch.equal(again.images, train.images) and again.captions == train.captions
    other = digits_dataset("train", seed=1)
    assert not torch.equal(other.attributes["index"], idx)
    assert digits_dataset("test", image_size=16).images.shape[-1] == 16
    with pytest.raises(ValueError, match="split"):
        digits_dataset("validation")
