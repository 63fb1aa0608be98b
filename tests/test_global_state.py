"""What hf_vision does to process-wide state: registration once per family, the AutoBackbone fix scoped to our
configs, the package root's lazy names, and a data stream that leaves torch's global RNG as it found it."""
from __future__ import annotations

import io
import tarfile

import pytest
import torch

import hf_vision
from hf_vision import auto


def test_registering_families_again_keeps_one_entry_each():
    before = [(config, dict(models)) for config, models in auto.FAMILIES]
    auto.register_families()
    auto.register_family(*auto.FAMILIES[0])
    configs = [config for config, _ in auto.FAMILIES]
    assert len(configs) == len(set(configs)) == 4
    assert sorted(auto.FAMILIES, key=lambda e: e[0].__name__) == sorted(before, key=lambda e: e[0].__name__)


def test_model_class_names_the_registered_classes():
    assert auto.model_class(hf_vision.ViTConfig, "AutoModelForImageClassification") is hf_vision.ViTForImageClassification
    with pytest.raises(ValueError, match="AutoModelForImageClassification.*MAEConfig"):
        auto.model_class(hf_vision.MAEConfig, "AutoModelForImageClassification")


def test_auto_backbone_fix_leaves_other_libraries_folders_to_transformers(tmp_path):
    """A local folder of a transformers backbone gets transformers' own AutoBackbone behaviour (whatever it is);
    only our backbone configs are routed around the 5.24 bug."""
    from transformers import AutoBackbone, ResNetBackbone, ResNetConfig

    foreign = tmp_path / "resnet"
    ResNetBackbone(ResNetConfig(embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1],
                                out_features=["stage1"])).save_pretrained(foreign)
    assert not auto._is_our_local_backbone(foreign) and not auto._is_our_local_backbone(str(foreign))
    original = AutoBackbone.from_pretrained.__func__._hf_vision_original

    def outcome(call):
        try:
            return type(call()).__name__
        except Exception as err:  # noqa: BLE001  (compare what transformers does, success or failure)
            return type(err).__name__

    assert outcome(lambda: AutoBackbone.from_pretrained(foreign)) == outcome(lambda: original(AutoBackbone, foreign))

    ours = tmp_path / "swin"
    config = hf_vision.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                                  window_size=4, out_features=["stage1"])
    hf_vision.SwinBackbone(config).save_pretrained(ours)
    assert auto._is_our_local_backbone(ours)
    assert type(AutoBackbone.from_pretrained(ours)) is hf_vision.SwinBackbone


def test_root_names_resolve_lazily_and_are_listed():
    for name in hf_vision.__all__:
        assert name in dir(hf_vision), name
        assert getattr(hf_vision, name) is not None, name
    from hf_vision import from_pretrained, optimize_for_cpu  # noqa: F401
    from hf_vision.hub import from_pretrained as defined

    assert from_pretrained is defined
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        hf_vision.nothing_here  # noqa: B018


def _tar_of_images(folder, count: int = 6):
    from PIL import Image

    folder.mkdir()
    with tarfile.open(folder / "train-00000.tar", "w") as tar:
        for i in range(count):
            buffer = io.BytesIO()
            Image.new("RGB", (20, 20), (i * 40 % 256, 80, 160)).save(buffer, format="PNG")
            info = tarfile.TarInfo(f"{i:04d}.png")
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)
    return folder


def test_streaming_leaves_the_global_rng_alone(tmp_path):
    """Records are augmented under their own seed; the caller's torch RNG stream continues as if nothing ran."""
    from hf_vision.data import Collate, ImageStream, PreprocessSpec, StreamLoader, load_image_source, \
        pretrain_transform

    spec = PreprocessSpec((16, 16), (0.5,) * 3, (0.5,) * 3)
    stream = ImageStream(load_image_source(str(_tar_of_images(tmp_path / "images")), "train", with_labels=False),
                         pretrain_transform(spec), batch_size=3, collate=Collate(spec.mean, spec.std),
                         infinite=False, with_labels=False, seed=5)
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    batches = list(StreamLoader(stream))
    assert len(batches) == 2
    assert torch.equal(torch.rand(4), expected)


def test_analysis_masks_through_a_view_without_touching_the_model():
    from hf_vision.analysis.inspect_model import unmasked, with_mask_ratio

    config = hf_vision.MAEConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32, decoder_hidden_size=8,
                                 decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                 decoder_intermediate_size=16, mask_ratio=0.75)
    model = hf_vision.MAEForPreTraining(config).eval()
    pixels = torch.randn(2, 3, 16, 16)
    view = with_mask_ratio(model, 0.5)
    assert model.config.mask_ratio == 0.75 and view.config.mask_ratio == 0.5  # the model's config is untouched
    assert view.vit.config is view.config and model.vit.config is model.config
    assert view.decoder.pred.weight is model.decoder.pred.weight  # weights shared, not copied
    assert int(view(pixels).mask.sum(1)[0]) == 8 and int(model(pixels).mask.sum(1)[0]) == 12  # of 16 patches
    assert int(unmasked(model)(pixels).mask.sum()) == 0
    vit = hf_vision.ViTModel(hf_vision.ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=32))
    assert with_mask_ratio(vit, 0.5) is vit


def test_converter_registries_are_filled_in_one_place_once():
    """Family modules only define converters; hf_vision.convert's table registers them (re-running it adds nothing)."""
    import ast
    from pathlib import Path

    from hf_vision import convert

    registries = {"TIMM_CONVERTERS", "TRANSFORMERS_CONVERTERS", "OFFICIAL_LOADERS", "TO_TIMM", "TO_TRANSFORMERS"}
    for path in sorted(Path(convert.__file__).parent.glob("*.py")):
        if path.name != "__init__.py":
            tree = ast.parse(path.read_text())
            names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            names |= {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
            assert not names & registries, f"{path.name} touches {sorted(names & registries)}"
    before = (list(convert.TIMM_CONVERTERS), dict(convert.TRANSFORMERS_CONVERTERS), dict(convert.OFFICIAL_LOADERS),
              dict(convert.TO_TIMM), dict(convert.TO_TRANSFORMERS))
    convert._fill_registries()
    after = (list(convert.TIMM_CONVERTERS), dict(convert.TRANSFORMERS_CONVERTERS), dict(convert.OFFICIAL_LOADERS),
             dict(convert.TO_TIMM), dict(convert.TO_TRANSFORMERS))
    assert after == before and len(convert.TIMM_CONVERTERS) == 2
    assert sorted(convert.TRANSFORMERS_CONVERTERS) == ["swin", "vit", "vit_mae"]
    assert sorted(convert.OFFICIAL_LOADERS) == ["mae-", "swin-", "vit-"]
