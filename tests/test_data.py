"""hf_vision.data: embedded digits offline, local sources, bad images, mode conversion, transforms, sharding,
exact resume of the stream position."""
from __future__ import annotations

import io
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vision.data import (
    BatchAugment,
    Collate,
    ImageStream,
    PreprocessSpec,
    StreamLoader,
    eval_transform,
    finetune_transform,
    load_image_source,
    pretrain_transform,
    to_rgb,
)
from hf_vision.data import embedded

SPEC = PreprocessSpec((16, 16), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _write_tar(path, items: list[tuple[str, bytes, int]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, data, label in items:
            for name, payload in ((f"{key}.img", data), (f"{key}.cls", str(label).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def _numbered_tar_dir(tmp_path, shards: int, per_shard: int):
    """Shards of solid-colour PNGs whose red channel encodes a unique id (recoverable after any crop)."""
    folder = tmp_path / "numbered"
    folder.mkdir(parents=True)
    for shard in range(shards):
        items = []
        for i in range(per_shard):
            uid = shard * per_shard + i
            items.append((f"s{uid:04d}", _png(Image.new("RGB", (20, 20), (uid, 7, 7))), uid % 3))
        _write_tar(folder / f"train-{shard:05d}-of-{shards:05d}.tar", items)
    return folder


def _ids(batch) -> list[int]:
    # normalised with mean=std=0.5: value = (x/255 - 0.5) / 0.5
    red = batch["pixel_values"][:, 0, 8, 8]
    return [round(float(v)) for v in ((red * 0.5 + 0.5) * 255)]


def test_embedded_digits_load_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train = load_image_source(None, "train")
    test = load_image_source("digits", "test")
    assert train.class_names == [str(i) for i in range(10)]
    assert train.num_examples + test.num_examples == 1797
    labels = [int(r[train.label_column]) for r in train.dataset]
    assert len(labels) == train.num_examples and set(labels) == set(range(10))
    assert train.dataset.num_shards == embedded.TRAIN_SHARDS
    record = next(iter(test.dataset))
    image = Image.open(io.BytesIO(record[test.image_column]["bytes"]))
    assert image.mode == "RGB" and image.size == (32, 32)


def test_embedded_digits_written_once_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_VISION_CACHE", str(tmp_path))
    folder = embedded.digits_dir()
    assert (folder / "COMPLETE").exists() and not list(folder.parent.glob(".digits-*"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert embedded.digits_dir() == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes  # not rewritten
    # Same split as the default cache: the split is seeded, not random.
    monkeypatch.delenv("HF_VISION_CACHE")
    default = sorted(p.name for p in embedded.digits_dir().glob("*.tar"))
    assert sorted(p.name for p in folder.glob("*.tar")) == default
    for name in default:
        assert (folder / name).read_bytes() == (embedded.digits_dir() / name).read_bytes()


def test_to_rgb_rescales_16_bit_and_handles_every_mode():
    grey16 = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert grey16.mode.startswith("I")
    assert np.asarray(to_rgb(grey16))[0, 0].tolist() == [128, 128, 128]  # saturating convert gives 255
    as_i = grey16.convert("I")
    assert np.asarray(to_rgb(as_i))[0, 0].tolist() == [128, 128, 128]
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))  # fully transparent junk colour
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in CMYK
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [255, 0, 0]
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 200, 0] * 256)
    assert np.asarray(to_rgb(palette))[0, 0].tolist() == [0, 200, 0]
    assert to_rgb(Image.new("L", (2, 2), 9)).mode == "RGB"
    assert to_rgb(Image.new("1", (2, 2), 1)).mode == "RGB"


def test_bad_images_are_skipped_counted_and_reported(tmp_path, caplog):
    good = Image.new("RGB", (24, 24), (200, 10, 10))
    full_jpeg = _jpeg(good)
    items = [
        ("a-rgb", _png(good), 0),
        ("b-corrupt", b"this is not an image", 1),
        ("c-gray", _png(Image.new("L", (24, 24), 77)), 2),
        ("d-cmyk", _jpeg(Image.new("CMYK", (24, 24), (0, 255, 255, 0))), 0),
        ("e-truncated", full_jpeg[: len(full_jpeg) // 2], 1),
        ("f-rgba", _png(Image.new("RGBA", (24, 24), (1, 2, 3, 0))), 2),
        ("g-16bit", _png(Image.fromarray(np.full((24, 24), 65535 // 4, dtype=np.uint16))), 0),
        ("h-palette", _png(Image.new("P", (24, 24), 3)), 1),
    ]
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write_tar(folder / "train-00000-of-00001.tar", items)
    source = load_image_source(str(folder), "train")
    stream = ImageStream(source, eval_transform(PreprocessSpec((16, 16), (0,) * 3, (1,) * 3, crop_pct=1.0)),
                         batch_size=4, collate=Collate((0,) * 3, (1,) * 3), infinite=False)
    loader = StreamLoader(stream)
    with caplog.at_level("WARNING", logger="hf_vision.data"):
        batches = list(loader)
    pixels = torch.cat([b["pixel_values"] for b in batches])
    labels = torch.cat([b["labels"] for b in batches]).tolist()
    assert pixels.shape == (6, 3, 16, 16) and labels == [0, 2, 0, 2, 0, 1]
    assert loader.bad_images == 2
    report = loader.report()
    assert "position 1" in report and "position 4" in report, report
    assert sum("undecodable" in r.message for r in caplog.records) == 2
    centre = (pixels[:, :, 8, 8] * 255).round().tolist()
    assert centre[1] == [77, 77, 77]  # grayscale replicated
    assert centre[2][0] > 240 and centre[2][1] < 15  # CMYK red
    assert centre[3] == [255, 255, 255]  # transparent over white
    assert 60 <= centre[4][0] <= 68  # 16-bit quarter grey -> 64, not saturated


def test_local_parquet_file_imagefolder_and_tar_read_alike(tmp_path):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    images = [Image.new("RGB", (20, 20), (i * 40, 0, 0)) for i in range(4)]
    records = {"image": [{"bytes": _png(im), "path": None} for im in images], "label": [0, 1, 0, 1]}
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["cat", "dog"])})
    Dataset.from_dict(records, features=features).to_parquet(str(tmp_path / "data.parquet"))
    for i, im in enumerate(images):
        (tmp_path / "folder" / ["cat", "dog"][i % 2]).mkdir(parents=True, exist_ok=True)
        im.save(tmp_path / "folder" / ["cat", "dog"][i % 2] / f"{i}.png")
    for source in (str(tmp_path / "data.parquet"), str(tmp_path / "folder")):
        src = load_image_source(source, "train")
        assert src.class_names == ["cat", "dog"], source
        stream = ImageStream(src, eval_transform(SPEC), batch_size=4, collate=Collate(SPEC.mean, SPEC.std),
                             infinite=False)
        (batch,) = list(StreamLoader(stream))
        assert batch["pixel_values"].shape == (4, 3, 16, 16)
        assert sorted(batch["labels"].tolist()) == [0, 0, 1, 1]


def test_transforms_shapes_and_reduced_jpeg_decode():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (25, 25, 3)), np.ones((32, 32, 1))).astype(np.uint8)  # 800x800
    data = _jpeg(Image.fromarray(smooth), quality=95)
    spec = PreprocessSpec((64, 64), (0.5,) * 3, (0.5,) * 3)
    for transform in (pretrain_transform(spec), finetune_transform(spec), eval_transform(spec)):
        out = transform(Image.open(io.BytesIO(data)))
        assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    # Reduced-size decoding must look like the full decode followed by the same resize (eval: deterministic).
    fast = eval_transform(spec)(Image.open(io.BytesIO(data))).float()
    slow = eval_transform(spec, reduced_decode=False)(Image.open(io.BytesIO(data))).float()
    assert (fast - slow).abs().mean() < 6.0
    probe = Image.open(io.BytesIO(data))
    from hf_vision.data.decode import draft_for

    assert draft_for(probe, (100, 100)) == 8.0 and probe.size == (100, 100)


def test_collate_and_batch_augment_mixup_cutmix_smoothing():
    examples = [{"pixel_values": torch.full((3, 8, 8), 255, dtype=torch.uint8), "labels": i % 4} for i in range(8)]
    plain = Collate((0.5,) * 3, (0.5,) * 3)(examples)
    assert torch.allclose(plain["pixel_values"], torch.ones(8, 3, 8, 8)) and plain["labels"].dtype == torch.long
    smooth = BatchAugment(4, label_smoothing=0.1)(plain)["labels"]
    assert torch.allclose(smooth.sum(-1), torch.ones(8))
    assert torch.allclose(smooth[0], torch.tensor([0.925, 0.025, 0.025, 0.025]))
    mixed = BatchAugment(4, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)(plain)["labels"]
    assert mixed.shape == (8, 4) and torch.allclose(mixed.sum(-1), torch.ones(8))
    assert (mixed > 0.03).sum(-1).max() >= 2  # two classes mixed
    erased = BatchAugment(4, random_erasing=1.0)(plain)["pixel_values"]
    assert ((erased != 1).flatten(1).sum(-1) > 0).all()  # every sample got a box of random values
    assert torch.equal(plain["labels"], torch.arange(8) % 4)  # inputs not modified in place


def _stream(folder, *, rank=0, world_size=1, seed=3, batch_size=4, infinite=True):
    source = load_image_source(str(folder), "train")
    return ImageStream(source, pretrain_transform(PreprocessSpec((16, 16), (0.5,) * 3, (0.5,) * 3), hflip=0.0,
                                                  scale=(0.9, 1.0)),
                       batch_size=batch_size, collate=Collate((0.5,) * 3, (0.5,) * 3), shuffle_buffer=8,
                       seed=seed, rank=rank, world_size=world_size, infinite=infinite)


def test_ranks_see_disjoint_data_and_warn_on_uneven_shards(tmp_path):
    folder = _numbered_tar_dir(tmp_path, shards=4, per_shard=6)
    seen = []
    for rank in range(2):
        seen.append([i for b in StreamLoader(_stream(folder, rank=rank, world_size=2, infinite=False)) for i in _ids(b)])
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(24))
    uneven = _numbered_tar_dir(tmp_path / "u", shards=3, per_shard=5)
    with pytest.warns(UserWarning, match="not a multiple of world_size=2"):
        streams = [_stream(uneven, rank=r, world_size=2) for r in range(2)]
    # Infinite streams: both ranks produce as many steps as asked, without running dry.
    parts = []
    for stream in streams:
        it = iter(StreamLoader(stream))
        parts.append([i for _ in range(6) for i in _ids(next(it))])
    assert len(parts[0]) == len(parts[1]) == 24
    first_epoch = [set(p[:7]) for p in parts]  # 15 examples: 8 and 7 per rank
    assert not first_epoch[0] & first_epoch[1]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stream_resume_is_exact(tmp_path, num_workers):
    folder = _numbered_tar_dir(tmp_path, shards=4, per_shard=5)
    reference = iter(StreamLoader(_stream(folder), num_workers=num_workers))
    expected = [next(reference) for _ in range(12)]  # 48 examples: crosses two epoch boundaries
    first = StreamLoader(_stream(folder), num_workers=num_workers)
    it = iter(first)
    got = [next(it) for _ in range(5)]  # odd count: resume must start at worker 1
    state = first.state_dict()
    del it
    resumed = StreamLoader(_stream(folder), num_workers=num_workers)
    resumed.load_state_dict(state)
    it = iter(resumed)
    got += [next(it) for _ in range(7)]
    for a, b in zip(expected, got):
        assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
    ids = [i for b in expected for i in _ids(b)]
    assert len(set(ids[:16])) == 16  # no repeats inside an epoch (workers interleave their epochs)
    if num_workers == 0:
        assert sorted(ids[:20]) == list(range(20))
    with pytest.raises(ValueError, match="num_workers"):
        StreamLoader(_stream(folder), num_workers=1 - min(num_workers, 1)).load_state_dict(state)


def test_data_benchmark_runs_and_compares(tmp_path):
    from hf_vision.benchmark.pipeline import format_data_table, reference_pipeline, run_data_benchmark, sample_jpegs

    images = sample_jpegs(3, long_side=(100, 140))
    assert all(Image.open(io.BytesIO(d)).format == "JPEG" for d in images)
    ref = reference_pipeline("pretrain", 32)(images[0])
    assert ref.shape == (3, 32, 32) and ref.dtype == torch.float32
    report = run_data_benchmark(kinds=("pretrain", "eval"), size=32, num_images=4, batch_size=2, repeats=1)
    for kind in ("pretrain", "eval"):
        result = report["results"][kind]
        assert result["ours"][0] > 0 and result["reference"][0] > 0 and result["ratio"] > 0
    assert "pretrain" in format_data_table(report)


def test_collate_normalises_without_touching_its_input():
    rng = np.random.default_rng(1)
    pixels = torch.from_numpy(rng.integers(0, 256, (4, 3, 5, 6), dtype=np.uint8))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    collate = Collate(mean, std)
    out = collate.normalize(pixels)
    expected = (pixels.double() / 255 - torch.tensor(mean).double().view(1, 3, 1, 1)) / torch.tensor(std).double().view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and torch.allclose(out.double(), expected, atol=1e-5)
    floats = pixels.float()
    before = floats.clone()
    collate.normalize(floats)  # float input: a new tensor, never normalised in place
    assert torch.equal(floats, before)
    # Channels-last examples (what the transforms return) collate to the same contiguous batch.
    examples = [{"pixel_values": p.permute(1, 2, 0).contiguous().permute(2, 0, 1)} for p in pixels]
    batch = collate(examples)["pixel_values"]
    assert batch.is_contiguous() and torch.equal(batch, out)


def test_uint8_pil_round_trip_is_exact_and_channels_last():
    from hf_vision.data.transforms import dense_channels_last, pil_to_uint8, uint8_to_pil

    rng = np.random.default_rng(2)
    array = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    pixels = pil_to_uint8(image)
    assert pixels.shape == (3, 7, 9) and pixels.stride() == (1, 27, 3)
    assert torch.equal(pixels, torch.from_numpy(array).permute(2, 0, 1))
    assert np.array_equal(np.asarray(uint8_to_pil(pixels)), array)
    planar = torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (3, H, W) planar storage
    assert np.array_equal(np.asarray(uint8_to_pil(planar)), array)
    crop = dense_channels_last(planar[:, 1:6, 2:8])
    assert crop.stride() == (1, 18, 3) and torch.equal(crop, planar[:, 1:6, 2:8])


@pytest.mark.parametrize("recipe", ["pretrain", "finetune"])
def test_crop_flip_randaugment_match_torchvision_draw_for_draw(recipe):
    """Same seed -> the same crop box, flip and RandAugment ops as torchvision's own transforms, in order."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    rng = np.random.default_rng(3)
    array = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    data = _png(Image.fromarray(array))  # not a JPEG: decoded pixels are exactly `array`
    spec = PreprocessSpec((24, 32), (0.5,) * 3, (0.5,) * 3)  # non-square: catches swapped height/width
    ours = pretrain_transform(spec) if recipe == "pretrain" else finetune_transform(spec)
    scale = (0.2, 1.0) if recipe == "pretrain" else (0.08, 1.0)
    bicubic = v2.InterpolationMode.BICUBIC
    reference = [v2.RandomResizedCrop((24, 32), scale=scale, interpolation=bicubic, antialias=True),
                 v2.RandomHorizontalFlip(0.5)]
    randaugment = v2.RandAugment(2, 9) if recipe == "finetune" else None
    pixels = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    for seed in range(12):
        torch.manual_seed(seed)
        got = ours(Image.open(io.BytesIO(data)))
        torch.manual_seed(seed)
        want = v2.Compose(reference)(pixels)
        if randaugment is not None:
            want = TF.pil_to_tensor(randaugment(TF.to_pil_image(want)))
        assert got.shape == (3, 24, 32) and torch.equal(got, want), seed


def test_reduced_jpeg_decode_keeps_the_crop_geometry(monkeypatch):
    """A crop drawn on the header size and mapped onto a DCT-reduced decode covers the same region as on the
    full decode. On linear ramps (R = x, G = y) any shift of the box shows up as an intensity offset:
    1 level = 3.1 px of the 800 px image, and resampling a ramp is exact, so the difference between the two
    paths is geometry plus JPEG error."""
    from hf_vision.data import transforms as transforms_module

    factors = []

    def spy(image, *, min_size=None):
        pixels, factor = transforms_module.load_uint8.__wrapped__(image, min_size=min_size)
        factors.append(factor)
        return pixels, factor

    spy.__wrapped__ = transforms_module.load_uint8
    monkeypatch.setattr(transforms_module, "load_uint8", spy)
    spec = PreprocessSpec((64, 64), (0.5,) * 3, (0.5,) * 3)
    for width, height in ((800, 800), (803, 611)):  # 803 x 611: the reduced size rounds up (partial last pixel)
        x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
        y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
        data = _jpeg(Image.fromarray(np.stack([x, y, (x + y) / 2], -1).round().astype(np.uint8)), quality=95)
        for seed in range(10):
            factors.clear()
            outs = []
            for reduced in (True, False):
                torch.manual_seed(seed)
                outs.append(pretrain_transform(spec, reduced_decode=reduced)(Image.open(io.BytesIO(data))).float())
            assert factors[0] in (4.0, 8.0) and factors[1] == 1.0  # crops >= 358 px, output 64 px: 1/4 or 1/8
            error = (outs[0] - outs[1]).abs().mean().item()
            # Measured <= 1.3 (edges within half a decoded pixel); truncating the box instead reached 2.3.
            assert error < 2.0, (width, height, seed, error)


def test_bad_images_counted_per_file_and_per_occurrence(tmp_path):
    """An endless stream meets the same corrupt file once per epoch: occurrences grow, files stay distinct."""
    good = _png(Image.new("RGB", (8, 8), (9, 9, 9)))
    items = [("a", good, 0), ("b-corrupt", b"not an image", 1), ("c", good, 0), ("d-corrupt", b"nor this", 1)]
    folder = tmp_path / "two_bad"
    folder.mkdir()
    _write_tar(folder / "train-00000-of-00001.tar", items)
    stream = ImageStream(load_image_source(str(folder), "train"),
                         eval_transform(PreprocessSpec((8, 8), (0,) * 3, (1,) * 3, crop_pct=1.0)),
                         batch_size=2, collate=Collate((0,) * 3, (1,) * 3), infinite=True)
    loader = StreamLoader(stream)
    batches = iter(loader)
    for _ in range(3):  # 2 good images per epoch: 3 epochs
        next(batches)
    assert loader.bad_images >= 4 and len(loader.bad_files) == 2
    assert f"skipped {loader.bad_images} undecodable image(s) from 2 file(s)" in loader.report()
