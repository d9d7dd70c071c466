"""CLIP preprocessing against torchvision/open_clip references, RGB conversion, random crops."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from clipedu.transforms import (
    MEAN,
    STD,
    augment_seeds,
    load_image,
    normalize,
    pil_to_tensor,
    preprocess,
    random_crop,
    resize_center_crop,
    to_rgb,
)


def openai_reference(resolution):
    # openai/CLIP's clip._transform, rebuilt from torchvision parts
    return T.Compose([T.Resize(resolution, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(resolution),
                      lambda im: im.convert("RGB"), T.ToTensor(), T.Normalize(MEAN, STD)])


def random_image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def test_constants_match_open_clip():
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    assert MEAN == tuple(OPENAI_DATASET_MEAN) and STD == tuple(OPENAI_DATASET_STD)


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (97, 131), (640, 479), (50, 40)])
@pytest.mark.parametrize("resolution", [224, 64])
def test_preprocess_equals_torchvision_compose(size, resolution):
    image = random_image(*size, seed=size[0])
    ours = preprocess(image, resolution)
    ref = openai_reference(resolution)(image)
    assert ours.shape == (3, resolution, resolution) and ours.dtype == torch.float32
    assert torch.equal(ours, ref)


def test_preprocess_equals_open_clip_eval_transform():
    from open_clip.transform import image_transform
    image = random_image(320, 240, seed=3)
    ref = image_transform(224, is_train=False)(image)
    assert torch.allclose(preprocess(image, 224), ref, atol=1e-6)


def test_preprocess_grayscale_equals_reference():
    image = random_image(120, 90).convert("L")
    assert torch.equal(preprocess(image, 64), openai_reference(64)(image))


def test_normalize_matches_per_image_reference():
    images = torch.randint(0, 256, (4, 3, 16, 20), dtype=torch.uint8)
    ref = torch.stack([T.Normalize(MEAN, STD)(im.float() / 255) for im in images])
    assert torch.allclose(normalize(images), ref, atol=1e-6)
    assert torch.allclose(normalize(images.float() / 255), ref, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        normalize(images[0])


def test_resize_center_crop_matches_torchvision_tensor_ops():
    images = torch.randint(0, 256, (3, 3, 48, 80), dtype=torch.uint8)
    ours = resize_center_crop(images.float(), 32)
    ref = TF.center_crop(TF.resize(images.float(), 32, interpolation=InterpolationMode.BICUBIC, antialias=True), 32)
    assert ours.shape == (3, 3, 32, 32)
    assert torch.allclose(ours, ref, atol=1e-3)
    as_uint8 = resize_center_crop(images, 32)
    assert as_uint8.dtype == torch.uint8
    assert (as_uint8.float() - ref.round().clamp(0, 255)).abs().max() <= 1
    assert torch.equal(resize_center_crop(images[:, :, :48, :48], 48), images[:, :, :48, :48])  # no-op


def test_resize_center_crop_close_to_pil_pipeline():
    image = Image.fromarray(np.kron(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, np.ones((12, 16), np.uint8)))
    image = image.convert("RGB")  # a smooth-ish blocky pattern 128x96
    pil = pil_to_tensor(image.resize((85, 64), Image.BICUBIC).crop((10, 0, 74, 64))).float()
    ours = resize_center_crop(pil_to_tensor(image)[None], 64)[0].float()
    assert (ours - pil).abs().mean() < 3


@pytest.mark.parametrize("mode,pixel,expected", [
    ("L", 100, (100, 100, 100)),
    ("1", 1, (255, 255, 255)),
    ("1", 0, (0, 0, 0)),
    ("LA", (80, 255), (80, 80, 80)),
    ("LA", (80, 0), (255, 255, 255)),
    ("La", (40, 128), (168, 168, 168)),  # premultiplied: 40 is 80 at half alpha
    ("RGBA", (200, 10, 20, 255), (200, 10, 20)),
    ("RGBA", (200, 10, 20, 0), (255, 255, 255)),
    ("RGBA", (0, 0, 0, 128), (127, 127, 127)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ("I;16", 65535, (255, 255, 255)),
    ("I;16", 257 * 100, (100, 100, 100)),
    ("I", 257 * 40, (40, 40, 40)),
    ("F", 12.0, (12, 12, 12)),
])
def test_to_rgb_modes(mode, pixel, expected):
    image = Image.new(mode, (3, 2), pixel)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (3, 2)
    assert np.abs(np.asarray(rgb).astype(int) - expected).max() <= 1


def test_to_rgb_palette_with_and_without_transparency():
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    image = Image.new("P", (2, 1))
    image.putpalette(palette)
    image.putpixel((0, 0), 1)  # red
    image.putpixel((1, 0), 2)  # blue
    assert np.asarray(to_rgb(image)).tolist() == [[[255, 0, 0], [0, 0, 255]]]
    image.info["transparency"] = 2  # blue becomes transparent -> white
    assert np.asarray(to_rgb(image)).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_load_image_roundtrip_and_errors(tmp_path):
    image = Image.new("RGBA", (5, 4), (10, 200, 30, 255))
    image.save(tmp_path / "ok.png")
    loaded = load_image(tmp_path / "ok.png")
    assert loaded.mode == "RGB" and loaded.getpixel((0, 0)) == (10, 200, 30)

    with pytest.raises(FileNotFoundError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg"):
        load_image(tmp_path / "bad.jpg")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.png"):
        load_image(tmp_path / "truncated.png")


def coordinate_images(n, size=64):
    # pixel value encodes its own position, so a crop reveals where it came from
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = torch.stack([xx, yy, (xx + yy) % 256]).to(torch.uint8)
    return image.expand(n, -1, -1, -1).clone()


def test_random_crop_takes_a_square_sub_image():
    images = coordinate_images(6)
    out = random_crop(images, 32, seeds=list(range(6)), scale=(0.25, 0.25))  # side 32 -> exact crops
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.uint8
    for crop in out:
        x0, y0 = int(crop[0, 0, 0]), int(crop[1, 0, 0])
        assert torch.equal(crop, images[0, :, y0:y0 + 32, x0:x0 + 32])
    assert len({(int(c[0, 0, 0]), int(c[1, 0, 0])) for c in out}) > 1  # positions vary


def test_random_crop_full_scale_is_identity_and_validates():
    images = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    assert torch.equal(random_crop(images, 40, scale=(1.0, 1.0)), images)
    with pytest.raises(ValueError, match="one seed per image"):
        random_crop(images, 32, seeds=[1])
    with pytest.raises(ValueError, match="scale"):
        random_crop(images, 32, scale=(0.0, 1.0))


def test_random_crop_per_sample_seeds_are_batch_independent():
    images = torch.rand(5, 3, 48, 48)
    seeds = augment_seeds(seed=7, indices=[10, 11, 12, 13, 14], step=3)
    full = random_crop(images, 24, seeds=seeds)
    again = random_crop(images, 24, seeds=seeds)
    assert torch.equal(full, again)
    # the same sample in a different batch (another rank's slice) gets the same crop
    part = random_crop(images[[3, 1]], 24, seeds=seeds[[3, 1]])
    assert torch.allclose(part, full[[3, 1]])
    other = random_crop(images, 24, seeds=augment_seeds(seed=7, indices=[10, 11, 12, 13, 14], step=4))
    assert not torch.allclose(other, full)


def test_augment_seeds_depend_on_each_input():
    base = augment_seeds(0, [0, 1, 2, 3], 0)
    assert base.dtype == torch.int64 and len(set(base.tolist())) == 4
    assert torch.equal(augment_seeds(0, [2, 3], 0), base[2:])
    assert not torch.equal(augment_seeds(1, [0, 1, 2, 3], 0), base)
    assert not torch.equal(augment_seeds(0, [0, 1, 2, 3], 1), base)
    assert (base >= 0).all()
