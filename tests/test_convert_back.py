"""The way back: our models as timm and transformers models (random weights, tiny configs), each compared with our
own outputs, round trips through the forward converters, refusals that name the field, and scripts/convert.py --to
run as a user runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import hf_vision
from hf_vision import convert

from .cases import tiny_hybrid, tiny_mae, tiny_swin, tiny_vit

timm = pytest.importorskip("timm")

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(atol=1e-4, rtol=1e-4)


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values in every parameter (norm scales, biases, tokens) so that no mapping hides behind init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def _images(config, batch: int = 2, seed: int = 1) -> torch.Tensor:
    size = config.image_size
    height, width = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, config.num_channels, height, width, generator=torch.Generator().manual_seed(seed))


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], atol=0, rtol=0, msg=key)


# ---------------------------------------------------------------- ViT and hybrid -> timm
VIT_TO_TIMM = {
    "cls": tiny_vit(),
    "gap-fcnorm": tiny_vit(pooling="gap"),
    "gap-noclass": tiny_vit(pooling="gap", class_token=False),
    "gap-nofcnorm": tiny_vit(pooling="gap", fc_norm=False),
    "cls-fcnorm": tiny_vit(fc_norm=True),
    "noqkvbias-tanh-eps": tiny_vit(qkv_bias=False, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5),
    "nopos-nonsquare": tiny_vit(pooling="gap", class_token=False, position_embedding_type="none", image_size=[32, 48]),
}


@pytest.mark.parametrize("config", VIT_TO_TIMM.values(), ids=VIT_TO_TIMM.keys())
def test_vit_to_timm_and_back(config):
    ours = _randomize(hf_vision.ViTForImageClassification(config))
    theirs = convert.to_timm(ours)
    assert type(theirs).__name__ == "VisionTransformer" and not theirs.training
    x = _images(config)
    with torch.no_grad():
        expected = ours(x)
        torch.testing.assert_close(theirs(x), expected.logits, **TOL)
        features = theirs.forward_features(x)
        torch.testing.assert_close(features, ours.vit(x).last_hidden_state, **TOL)
    back = convert.from_timm(theirs)
    assert type(back) is hf_vision.ViTForImageClassification
    _assert_same_state(back, ours)


def test_vit_to_timm_carries_preprocessing_and_fixed_sincos():
    """A fixed sin-cos table becomes timm's (learned) table with the same values; mean/std/size travel."""
    config = tiny_vit(position_embedding_type="sincos2d", image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6])
    ours = _randomize(hf_vision.ViTModel(config))
    theirs = convert.to_timm(ours)
    assert theirs.num_classes == 0
    cfg = theirs.pretrained_cfg
    assert (cfg["mean"], cfg["std"], cfg["input_size"]) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), (3, 32, 32))
    assert "hf_hub_id" not in cfg  # nothing claims timm's released weights
    x = _images(config)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x).pooler_output, **TOL)


@pytest.mark.parametrize(
    "config",
    [tiny_hybrid(), tiny_hybrid(backbone_std_style="timm", backbone_std_eps=1e-8, backbone_norm_eps=1e-5),
     tiny_hybrid(backbone_layers=(), patch_size=2, image_size=32, pooling="gap")],
    ids=["google-std-folded", "timm-std", "stem-only-gap"],
)
def test_hybrid_to_timm_and_back(config):
    ours = _randomize(hf_vision.HybridForImageClassification(config))
    theirs = convert.to_timm(ours)
    assert type(theirs.patch_embed).__name__ == "HybridEmbed"
    x = _images(config)
    with torch.no_grad():
        expected = ours(x).logits
        torch.testing.assert_close(theirs(x), expected, **TOL)
        back = convert.from_timm(theirs)
        torch.testing.assert_close(back(x).logits, expected, **TOL)
    if config.backbone_std_style == "timm":  # the same formula: the kernels travel unchanged
        _assert_same_state(back, ours)


def test_hybrid_to_timm_uses_a_registered_architecture(tmp_path):
    """A trunk like one of timm's own (here the stem of `vit_tiny_r_s16_p8_224`: width 64, GroupNorm 32, timm's
    standardisation; R50's 3-4-9 stages map the same way) is named in timm's config.json, which can rebuild it; a
    custom trunk cannot be named there and writing it is refused."""
    config = tiny_hybrid(backbone_layers=(), backbone_width=64, backbone_norm_groups=32, backbone_norm_eps=1e-5,
                         backbone_std_style="timm", backbone_std_eps=1e-8, patch_size=2)
    ours = _randomize(hf_vision.HybridForImageClassification(config))
    hf_vision.hub.export_checkpoint(ours, tmp_path / "hybrid", to="timm")
    theirs = timm.create_model(f"local-dir:{tmp_path / 'hybrid'}", pretrained=True).eval()
    assert theirs.pretrained_cfg["architecture"] == "vit_tiny_r_s16_p8_224"
    x = _images(config, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x).logits, **TOL)
    with pytest.raises(ValueError, match="embed_layer"):
        hf_vision.hub.export_checkpoint(hf_vision.HybridForImageClassification(tiny_hybrid()), tmp_path / "x", to="timm")


@pytest.mark.parametrize("overrides, field", [
    (dict(representation_size=16), "representation_size"),
    (dict(classifier_norm="batchnorm"), "classifier_norm"),
    (dict(intermediate_size=48), "intermediate_size"),
])
def test_vit_to_timm_refuses_what_timm_lacks(overrides, field):
    with pytest.raises(ValueError, match=field):
        convert.to_timm(hf_vision.ViTForImageClassification(tiny_vit(**overrides)))


# ---------------------------------------------------------------- ViT -> transformers
@pytest.mark.parametrize("cls, overrides", [
    (hf_vision.ViTForImageClassification, dict()),
    (hf_vision.ViTModel, dict(representation_size=16)),  # pre-logits = transformers' tanh pooler
    (hf_vision.ViTModel, dict(image_size=[32, 48])),  # no pooler
], ids=["classifier", "model-prelogits", "model-nonsquare"])
def test_vit_to_transformers_and_back(cls, overrides):
    config = tiny_vit(layer_norm_eps=1e-12, **overrides)
    ours = _randomize(cls(config))
    theirs = convert.to_transformers(ours)
    x = _images(config)
    with torch.no_grad():
        expected, got = ours(x), theirs(x)
        if cls is hf_vision.ViTForImageClassification:
            assert isinstance(theirs, transformers.ViTForImageClassification)
            torch.testing.assert_close(got.logits, expected.logits, **TOL)
        else:
            assert type(theirs) is transformers.ViTModel
            torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, **TOL)
            pooled = got.pooler_output if config.representation_size else got.last_hidden_state[:, 0]
            torch.testing.assert_close(pooled, expected.pooler_output, **TOL)
    _assert_same_state(convert.from_transformers(theirs), ours)


@pytest.mark.parametrize("config, field", [
    (tiny_vit(pooling="gap"), "pooling"),
    (tiny_vit(fc_norm=True), "fc_norm"),
    (tiny_vit(representation_size=16), "representation_size"),
    (tiny_vit(position_embedding_type="sincos2d"), "position_embedding_type"),
    (tiny_vit(pooling="gap", class_token=False, fc_norm=False), "class_token"),
    (tiny_hybrid(), "trunk"),
], ids=["gap", "fc_norm", "prelogits-classifier", "sincos", "noclass", "hybrid"])
def test_vit_to_transformers_refuses_what_transformers_lacks(config, field):
    cls = hf_vision.HybridForImageClassification if isinstance(config, hf_vision.HybridConfig) \
        else hf_vision.ViTForImageClassification
    with pytest.raises(ValueError, match=field):
        convert.to_transformers(cls(config))


# ---------------------------------------------------------------- Swin
SWIN = {
    "tiny": tiny_swin(),
    # stage 4 sees a 2x2 map: timm builds it with window 2, so our 7x7 tables are cropped to 3x3
    "clamped-stage": tiny_swin(image_size=64, window_size=4, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4)),
}


@pytest.mark.parametrize("config", SWIN.values(), ids=SWIN.keys())
def test_swin_to_timm_and_back(config):
    ours = _randomize(hf_vision.SwinForImageClassification(config))
    theirs = convert.to_timm(ours)
    assert type(theirs).__name__ == "SwinTransformer"
    x = _images(config)
    with torch.no_grad():
        expected = ours(x).logits
        torch.testing.assert_close(theirs(x), expected, **TOL)
        back = convert.from_timm(theirs)
        torch.testing.assert_close(back(x).logits, expected, **TOL)
        base = convert.to_timm(ours.swin)  # SwinModel -> num_classes=0, pooled features
        torch.testing.assert_close(base(x), ours.swin(x).pooler_output, **TOL)


def test_swin_to_transformers_and_back():
    config = tiny_swin(out_features=["stem", "stage1", "stage2", "stage3"])
    x = _images(config)
    clf = _randomize(hf_vision.SwinForImageClassification(config))
    backbone = _randomize(hf_vision.SwinBackbone(config), seed=3)
    with torch.no_grad():
        theirs = convert.to_transformers(clf)
        assert isinstance(theirs, transformers.SwinForImageClassification)
        torch.testing.assert_close(theirs(x).logits, clf(x).logits, **TOL)
        _assert_same_state(convert.from_transformers(theirs), clf)
        model = convert.to_transformers(clf.swin)
        assert type(model) is transformers.SwinModel
        torch.testing.assert_close(model(x).pooler_output, clf.swin(x).pooler_output, **TOL)
        hf_backbone = convert.to_transformers(backbone)
        maps = hf_backbone(x).feature_maps
        assert len(maps) == 4
        for a, b in zip(maps, backbone(x).feature_maps):
            torch.testing.assert_close(a, b, **TOL)
        _assert_same_state(convert.from_transformers(hf_backbone), backbone)


@pytest.mark.parametrize("target, config, field", [
    ("timm", tiny_swin(use_absolute_position_embeddings=True), "use_absolute_position_embeddings"),
    ("timm", tiny_swin(shifted_windows=False), "shifted_windows"),
    ("transformers", SWIN["clamped-stage"], "window_size"),
    ("transformers", tiny_swin(patch_norm=False), "patch_norm"),
])
def test_swin_refusals_name_the_field(target, config, field):
    with pytest.raises(ValueError, match=field):
        getattr(convert, f"to_{target}")(hf_vision.SwinForImageClassification(config))


# ---------------------------------------------------------------- MAE
def _mae() -> hf_vision.MAEForPreTraining:
    model = hf_vision.MAEForPreTraining(tiny_mae(norm_pix_loss=True))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def test_mae_to_transformers_pretraining_and_back():
    ours = _mae()
    theirs = convert.to_transformers(ours)
    assert isinstance(theirs, transformers.ViTMAEForPreTraining)
    x = _images(ours.config, batch=3)
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = ours(x, noise), theirs(x, noise=noise)
    torch.testing.assert_close(got.mask, expected.mask, atol=0, rtol=0)
    torch.testing.assert_close(got.ids_restore, expected.ids_restore, atol=0, rtol=0)
    torch.testing.assert_close(got.logits, expected.logits, **TOL)
    torch.testing.assert_close(got.loss, expected.loss, **TOL)
    _assert_same_state(convert.from_transformers(theirs), ours)
    encoder = convert.to_transformers(ours.vit)
    assert type(encoder) is transformers.ViTMAEModel
    with torch.no_grad():
        torch.testing.assert_close(encoder(x, noise=noise).last_hidden_state,
                                   ours.vit(x, noise).last_hidden_state, **TOL)


@pytest.mark.parametrize("global_pool", ["avg", "token"])
def test_mae_to_timm_gives_the_unmasked_encoder(global_pool):
    ours = _mae()
    theirs = convert.to_timm(ours, global_pool=global_pool)
    x = _images(ours.config)
    ours.config.mask_ratio = 0.0  # keep every patch; increasing noise keeps them in image order
    order = torch.arange(16.0).expand(2, 16) / 16
    with torch.no_grad():
        tokens = ours.vit(x, order).last_hidden_state
        torch.testing.assert_close(theirs.forward_features(x), tokens, **TOL)
        pooled = tokens[:, 1:].mean(1) if global_pool == "avg" else tokens[:, 0]
        torch.testing.assert_close(theirs(x), pooled, **TOL)
    back = convert.from_timm(theirs)  # the encoder as our ViT: weights unchanged
    for key, value in back.state_dict().items():
        torch.testing.assert_close(value, ours.vit.state_dict()[key], atol=0, rtol=0)


def test_mae_refuses_masking_variants():
    with pytest.raises(ValueError, match="mask_strategy"):
        convert.to_transformers(hf_vision.MAEForPreTraining(tiny_mae(mask_strategy="block")))
    with pytest.raises(ValueError, match="encoder_mask_tokens"):
        convert.to_timm(hf_vision.MAEModel(tiny_mae(encoder_mask_tokens=True)))


def test_unknown_model_is_refused_with_the_supported_list():
    with pytest.raises(ValueError, match="no converter to timm for Linear; supported: .*ViTModel"):
        convert.to_timm(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- scripts/convert.py --to
def _run_convert(*args: str) -> dict:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), *args], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_convert_script_writes_timm_and_transformers_checkpoints(tmp_path):
    vit = _randomize(hf_vision.ViTForImageClassification(tiny_vit(image_mean=[0.4, 0.4, 0.4])))
    vit.save_pretrained(tmp_path / "ours")
    x = _images(vit.config)
    with torch.no_grad():
        expected = vit(x).logits

    report = _run_convert(str(tmp_path / "ours"), str(tmp_path / "timm"), "--to", "timm")
    assert report["verified"] and report["max_abs_diff"] <= 1e-4
    saved = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert saved["architecture"] == "vit_base_patch16_224" and saved["pretrained_cfg"]["mean"] == [0.4, 0.4, 0.4]
    # timm's two ways to read it: the folder, and the architecture with the file and its pretrained_cfg overlaid
    # (with the file alone, timm takes the architecture's 1000-class cfg and drops our 5-class head as "adapted")
    by_folder = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    overlay = dict(saved["pretrained_cfg"], file=str(tmp_path / "timm" / "model.safetensors"))
    by_name = timm.create_model(saved["architecture"], pretrained=True, **saved["model_args"],
                                pretrained_cfg_overlay=overlay).eval()
    data = timm.data.resolve_data_config({}, model=by_folder)  # the folder's pretrained_cfg is ours
    assert (tuple(data["mean"]), tuple(data["input_size"]), data["crop_pct"]) == ((0.4, 0.4, 0.4), (3, 32, 32), 0.875)
    with torch.no_grad():
        torch.testing.assert_close(by_folder(x), expected, **TOL)
        torch.testing.assert_close(by_name(x), expected, **TOL)

    _run_convert(str(tmp_path / "ours"), str(tmp_path / "hf"), "--to", "transformers")
    loaded = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert type(loaded) is transformers.ViTForImageClassification
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    assert list(processor.image_mean) == [0.4, 0.4, 0.4]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, expected, **TOL)


def test_mae_pretrained_here_reaches_transformers_and_timm(tmp_path):
    """A user's path: an MAE saved by us -> transformers' ViTMAEForPreTraining and timm's ViT, from the files
    (the script's path in-process: the subprocess itself is covered above)."""
    mae = _mae()
    mae.save_pretrained(tmp_path / "mae")
    loaded = hf_vision.hub.from_pretrained(tmp_path / "mae")
    for to in ("transformers", "timm"):
        report = hf_vision.hub.export_checkpoint(loaded, tmp_path / to, to=to)
        assert report["verified"] and report["max_abs_diff"] <= 1e-4
    x = _images(mae.config)
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(4))
    hf = transformers.ViTMAEForPreTraining.from_pretrained(tmp_path / "transformers").eval()
    vit = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    with torch.no_grad():
        expected = mae(x, noise)
        got = hf(x, noise=noise)
        torch.testing.assert_close(got.logits, expected.logits, **TOL)
        torch.testing.assert_close(got.loss, expected.loss, **TOL)
        mae.config.mask_ratio = 0.0
        tokens = mae.vit(x, torch.arange(16.0).expand(2, 16) / 16).last_hidden_state
        torch.testing.assert_close(vit(x), tokens[:, 1:].mean(1), **TOL)
