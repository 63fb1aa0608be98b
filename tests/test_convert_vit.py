"""Conversion parity for ViT and R50+ViT: timm, transformers and Google's `.npz` layout, all with random weights.

Google-format files are written here by a small exporter (the inverse of the layout documented by Google's Flax
code); they are then read both by `load_official` and, independently, by timm's own `.npz` loader.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers

import hf_vision
from hf_vision import convert

from .cases import tiny_hybrid, tiny_vit

timm = pytest.importorskip("timm")

TINY_TIMM = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2, num_classes=5)


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values everywhere (norm scales, biases, class token too) so no mapping can hide behind init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def _images(*size: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- timm
@pytest.mark.parametrize(
    "overrides",
    [
        dict(),  # class token pooling
        dict(global_pool="avg"),  # GAP over patch tokens + fc_norm (class token kept, excluded from the mean)
        dict(global_pool="avg", class_token=False),
        dict(global_pool="avg", fc_norm=False),  # norm on every token, then mean
        dict(global_pool="token", fc_norm=True),
        dict(qkv_bias=False),
        dict(class_token=False, global_pool="avg", pos_embed="none"),
        dict(img_size=(32, 48)),  # non-square grid
    ],
    ids=["token", "avg", "avg-noclass", "avg-nofcnorm", "token-fcnorm", "noqkvbias", "nopos", "nonsquare"],
)
def test_from_timm_vit(overrides):
    ref = _randomize(timm.create_model("vit_base_patch16_224", pretrained=False, **{**TINY_TIMM, **overrides}))
    ours = convert.from_timm(ref)
    assert type(ours) is hf_vision.ViTForImageClassification and not ours.training
    x = _images(*ref.patch_embed.img_size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, ref(x), atol=1e-4, rtol=1e-4)
        features = ref.forward_features(x)
        out = ours.vit(x)
        torch.testing.assert_close(out.last_hidden_state, features, atol=1e-4, rtol=1e-4)
        # timm's pre-logits features (pooled, fc_norm'ed) are our pooler_output
        torch.testing.assert_close(out.pooler_output, ref.forward_head(features, pre_logits=True), atol=1e-4, rtol=1e-4)


def test_from_timm_headless_gives_base_model_and_keeps_normalisation():
    ref = _randomize(timm.create_model("vit_base_patch16_224", pretrained=False, **{**TINY_TIMM, "num_classes": 0}))
    ours = convert.from_timm(ref)
    assert type(ours) is hf_vision.ViTModel
    assert list(ours.config.image_mean) == list(ref.pretrained_cfg["mean"])
    x = _images(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).pooler_output, ref(x), atol=1e-4, rtol=1e-4)


def test_from_timm_carries_regularisation():
    ref = timm.create_model("vit_base_patch16_224", pretrained=False, **{**TINY_TIMM, "depth": 3}, drop_path_rate=0.1,
                            attn_drop_rate=0.05, proj_drop_rate=0.02)
    ours = convert.from_timm(ref)
    rates = [float(getattr(b.drop_path1, "drop_prob", 0.0)) for b in ref.blocks]
    assert [b.drop_path.prob for b in ours.vit.encoder.blocks] == pytest.approx(rates)
    assert (ours.config.attention_probs_dropout_prob, ours.config.hidden_dropout_prob) == (0.05, 0.02)


@pytest.mark.parametrize("overrides, word", [(dict(reg_tokens=2), "register"), (dict(global_pool="map"), "map"),
                                             (dict(init_values=0.1), "ls1"), (dict(pre_norm=True), "pre_norm")])
def test_from_timm_rejects_what_we_do_not_implement(overrides, word):
    ref = timm.create_model("vit_base_patch16_224", pretrained=False, **{**TINY_TIMM, **overrides})
    with pytest.raises(ValueError, match=word):
        convert.from_timm(ref)


def test_from_timm_r50_hybrid():
    """The real `vit_base_r50_s16_224` trunk (ResNet stages 3-4-9, TF SAME padding) with a small transformer."""
    ref = _randomize(timm.create_model("vit_base_r50_s16_224", pretrained=False, img_size=32, embed_dim=32, depth=1,
                                       num_heads=4, num_classes=5))
    ours = convert.from_timm(ref)
    assert type(ours) is hf_vision.HybridForImageClassification
    c = ours.config
    assert (c.backbone_layers, c.backbone_width, c.patch_size, c.grid_stride) == ([3, 4, 9], 64, 1, 16)
    assert (c.backbone_std_style, c.backbone_std_eps, c.backbone_norm_eps) == ("timm", 1e-8, 1e-5)
    x = _images(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name, layers, size", [("vit_tiny_r_s16_p8_224", [], 64),
                                                ("vit_small_r26_s32_224", [2, 2, 2, 2], 32)])
def test_from_timm_other_trunk_depths(name, layers, size):
    """Stem-only and four-stage trunks: the stride follows the stage count (4 and 32) times the patch size."""
    ref = _randomize(timm.create_model(name, pretrained=False, img_size=size, depth=1, num_classes=3))
    ours = convert.from_timm(ref)
    assert ours.config.backbone_layers == layers and ours.config.grid_stride == 32
    x = _images(size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, ref(x), atol=1e-4, rtol=1e-4)


def _tiny_timm_hybrid(layers=(1, 2), patch_size=2, img_size=32, **kwargs):
    """A timm VisionTransformer on a small timm ResNetV2 trunk (same classes as vit_*_r50_*, smaller widths)."""
    from timm.layers import GroupNormAct, HybridEmbed, StdConv2dSame
    from timm.models.resnetv2 import ResNetV2
    from timm.models.vision_transformer import VisionTransformer

    backbone = ResNetV2(layers=layers, channels=(32, 64, 128)[: len(layers)], stem_chs=8, num_classes=0,
                        global_pool="", preact=False, stem_type="same", conv_layer=partial(StdConv2dSame, eps=1e-8),
                        norm_layer=partial(GroupNormAct, num_groups=4))
    return VisionTransformer(img_size=img_size, patch_size=patch_size,
                             embed_layer=partial(HybridEmbed, backbone=backbone),
                             embed_dim=32, depth=2, num_heads=4, mlp_ratio=2, num_classes=5, **kwargs)


def test_from_timm_small_hybrid_with_patches_and_gap():
    ref = _randomize(_tiny_timm_hybrid(global_pool="avg", class_token=False))
    ours = convert.from_timm(ref)
    assert ours.config.grid_stride == 16 and ours.config.backbone_layers == [1, 2]
    x = _images(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, ref(x), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- transformers
def _hf_config(**overrides):
    base = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, num_labels=5, hidden_act="gelu")
    return transformers.ViTConfig(**{**base, **overrides})


@pytest.mark.parametrize("overrides", [dict(), dict(qkv_bias=False), dict(layer_norm_eps=1e-6, image_size=[32, 48])],
                         ids=["default", "noqkvbias", "nonsquare"])
def test_from_transformers_classifier(overrides):
    ref = _randomize(transformers.ViTForImageClassification(_hf_config(**overrides)))
    ours = convert.from_transformers(ref)
    assert type(ours) is hf_vision.ViTForImageClassification
    assert ours.config.id2label == ref.config.id2label and ours.config.layer_norm_eps == ref.config.layer_norm_eps
    size = overrides.get("image_size", [32, 32])
    x = _images(*size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, ref(x).logits, atol=1e-4, rtol=1e-4)
        # other resolutions, square and not, through both implementations' interpolate_pos_encoding
        # (transformers can only interpolate from a square trained grid)
        for other in ((48, 48), (40, 64)) if size[0] == size[1] else ():
            y = _images(*other, seed=3)
            torch.testing.assert_close(ours(y, interpolate_pos_encoding=True).logits,
                                       ref(y, interpolate_pos_encoding=True).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("pooler", [True, False])
def test_from_transformers_base_model(pooler):
    ref = _randomize(transformers.ViTModel(_hf_config(pooler_output_size=24), add_pooling_layer=pooler))
    ours = convert.from_transformers(ref)
    assert type(ours) is hf_vision.ViTModel
    assert ours.config.representation_size == (24 if pooler else None)
    x = _images(32, 32)
    with torch.no_grad():
        a, b = ref(x), ours(x)
        torch.testing.assert_close(b.last_hidden_state, a.last_hidden_state, atol=1e-4, rtol=1e-4)
        if pooler:  # transformers' Linear+tanh pooler is the paper's pre-logits layer
            torch.testing.assert_close(b.pooler_output, a.pooler_output, atol=1e-4, rtol=1e-4)


def test_from_transformers_rejects_other_heads():
    with pytest.raises(ValueError, match="ViTForMaskedImageModeling"):
        convert.from_transformers(transformers.ViTForMaskedImageModeling(_hf_config()))
    with pytest.raises(ValueError, match="model_type"):
        convert.from_transformers(transformers.BitModel(transformers.BitConfig()))


# ---------------------------------------------------------------- Google's .npz
def export_google(model) -> dict[str, np.ndarray]:
    """Our (classification) model -> arrays named and laid out as Google's Flax ViT / R50+ViT checkpoints."""
    base = getattr(model, "vit", model)
    c = base.config
    heads, dim = c.num_attention_heads, c.hidden_size
    sd = {k: v.detach().float().numpy() for k, v in base.state_dict().items()}
    hwio = lambda w: w.transpose(2, 3, 1, 0)  # noqa: E731  (out, in, kh, kw) -> (kh, kw, in, out)
    w = {
        "embedding/kernel": hwio(sd["embeddings.patch_embed.proj.weight"]),
        "embedding/bias": sd["embeddings.patch_embed.proj.bias"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "Transformer/posembed_input/pos_embedding": sd["embeddings.position_embeddings"],
    }
    if c.class_token:
        w["cls"] = sd["embeddings.cls_token"]
    for i in range(c.num_hidden_layers):
        src, dst = f"encoder.blocks.{i}.", f"Transformer/encoderblock_{i}/"
        mha = dst + "MultiHeadDotProductAttention_1/"
        qkv_w, qkv_b = sd[src + "attn.qkv.weight"], sd[src + "attn.qkv.bias"]
        for j, name in enumerate(("query", "key", "value")):
            w[f"{mha}{name}/kernel"] = qkv_w[j * dim:(j + 1) * dim].T.reshape(dim, heads, dim // heads)
            w[f"{mha}{name}/bias"] = qkv_b[j * dim:(j + 1) * dim].reshape(heads, dim // heads)
        w[mha + "out/kernel"] = sd[src + "attn.proj.weight"].T.reshape(heads, dim // heads, dim)
        w[mha + "out/bias"] = sd[src + "attn.proj.bias"]
        for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            w[f"{dst}{theirs}/scale"], w[f"{dst}{theirs}/bias"] = sd[src + ours + ".weight"], sd[src + ours + ".bias"]
        for r in (0, 1):
            w[f"{dst}MlpBlock_3/Dense_{r}/kernel"] = sd[f"{src}mlp.fc{r + 1}.weight"].T
            w[f"{dst}MlpBlock_3/Dense_{r}/bias"] = sd[f"{src}mlp.fc{r + 1}.bias"]
    if c.representation_size:
        w["pre_logits/kernel"], w["pre_logits/bias"] = sd["pre_logits.fc.weight"].T, sd["pre_logits.fc.bias"]
    if model is not base:
        w["head/kernel"] = model.classifier.weight.detach().numpy().T
        w["head/bias"] = model.classifier.bias.detach().numpy()
    if hasattr(c, "backbone_layers"):
        t = "embeddings.patch_embed.backbone."
        w["conv_root/kernel"] = hwio(sd[t + "stem.conv.weight"])
        w["gn_root/scale"], w["gn_root/bias"] = sd[t + "stem.norm.weight"], sd[t + "stem.norm.bias"]
        for i, depth in enumerate(c.backbone_layers):
            for j in range(depth):
                src, dst = f"{t}stages.{i}.blocks.{j}.", f"block{i + 1}/unit{j + 1}/"
                for r in (1, 2, 3):
                    w[f"{dst}conv{r}/kernel"] = hwio(sd[f"{src}conv{r}.weight"])
                    w[f"{dst}gn{r}/scale"], w[f"{dst}gn{r}/bias"] = sd[f"{src}norm{r}.weight"], sd[f"{src}norm{r}.bias"]
                if src + "downsample.conv.weight" in sd:
                    w[dst + "conv_proj/kernel"] = hwio(sd[src + "downsample.conv.weight"])
                    w[dst + "gn_proj/scale"] = sd[src + "downsample.norm.weight"]
                    w[dst + "gn_proj/bias"] = sd[src + "downsample.norm.bias"]
    return w


TINY_SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _write(tmp_path, model, name="ckpt.npz"):
    path = tmp_path / name
    np.savez(path, **export_google(model))
    return path


@pytest.mark.parametrize("pooling", ["cls", "gap"])
def test_load_official_vit_matches_source_and_timms_reader(tmp_path, pooling, caplog):
    torch.manual_seed(0)
    extra = dict(pooling="gap", class_token=False, fc_norm=False) if pooling == "gap" else {}
    source = _randomize(hf_vision.ViTForImageClassification(tiny_vit(**extra)))
    path = _write(tmp_path, source)
    loaded = convert.load_official(path, "vit-base-patch16-224", image_size=32, patch_size=8, **TINY_SIZES)
    assert type(loaded) is hf_vision.ViTForImageClassification and loaded.config.num_labels == 5
    assert loaded.config.pooling == pooling and loaded.config.class_token == (pooling == "cls")
    assert "not used" not in caplog.text  # every array of the file was placed
    x = _images(32, 32)
    with torch.no_grad():
        expected = source(x).logits
        torch.testing.assert_close(loaded(x).logits, expected, atol=1e-5, rtol=1e-5)
        # an independent reader of the same file: timm's loader for Google's checkpoints
        gap = dict(global_pool="avg", class_token=False, fc_norm=False) if pooling == "gap" else {}
        ref = timm.create_model("vit_base_patch16_224", pretrained=False, **TINY_TIMM, **gap)
        ref.load_pretrained(str(path))
        torch.testing.assert_close(loaded(x).logits, ref.eval()(x), atol=1e-4, rtol=1e-4)


def test_load_official_pre_logits(tmp_path):
    source = _randomize(hf_vision.ViTForImageClassification(tiny_vit(representation_size=24)))
    path = _write(tmp_path, source)
    loaded = convert.load_official(path, "vit-base-patch16-224", image_size=32, patch_size=8, **TINY_SIZES)
    assert loaded.config.representation_size == 24
    arrays = np.load(path)
    x = _images(32, 32)
    with torch.no_grad():
        out = loaded.vit(x)
        cls = out.last_hidden_state[:, 0].numpy()
        manual = np.tanh(cls @ arrays["pre_logits/kernel"] + arrays["pre_logits/bias"])  # Flax Dense: x @ kernel + b
        np.testing.assert_allclose(out.pooler_output.numpy(), manual, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded(x).logits, source(x).logits, atol=1e-5, rtol=1e-5)


def test_load_official_resizes_position_embeddings(tmp_path):
    source = _randomize(hf_vision.ViTForImageClassification(tiny_vit()))
    path = _write(tmp_path, source)
    loaded = convert.load_official(path, "vit-base-patch16-384", image_size=64, patch_size=8, **TINY_SIZES)
    assert loaded.config.image_size == 64
    pos = torch.from_numpy(np.load(path)["Transformer/posembed_input/pos_embedding"])
    # (1, 1 + 16, C) grid part -> (1, C, 4, 4) -> bicubic 8x8, computed here directly
    grid = pos[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(1, 64, 32)  # (1, C, 8, 8) -> (1, 64, C)
    got = loaded.vit.embeddings.position_embeddings
    torch.testing.assert_close(got[:, :1], pos[:, :1])
    torch.testing.assert_close(got[:, 1:], expected, atol=1e-6, rtol=1e-5)
    y = _images(64, 64)
    with torch.no_grad():  # same as running the 32px model with on-the-fly interpolation
        expected = source(y, interpolate_pos_encoding=True).logits
        torch.testing.assert_close(loaded(y).logits, expected, atol=1e-5, rtol=1e-5)


def test_load_official_r50_hybrid(tmp_path, caplog):
    torch.manual_seed(0)
    source = _randomize(hf_vision.HybridForImageClassification(
        tiny_hybrid(backbone_layers=(1, 2), backbone_width=8, patch_size=2)))
    path = _write(tmp_path, source)
    overrides = dict(image_size=32, patch_size=2, backbone_width=8, backbone_norm_groups=4, backbone_layers=(1, 2),
                     **TINY_SIZES)
    loaded = convert.load_official(path, "vit-base-r50-s16-224", **overrides)
    assert type(loaded) is hf_vision.HybridForImageClassification
    assert loaded.config.backbone_std_style == "google"  # Google's numerics by default
    assert "not used" not in caplog.text  # every trunk array was placed
    x = _images(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, source(x).logits, atol=1e-5, rtol=1e-5)
        # timm reads the same file; with timm's standardisation/GroupNorm eps the two must agree exactly
        as_timm = convert.load_official(path, "vit-base-r50-s16-224", backbone_std_style="timm", backbone_std_eps=1e-8,
                                        backbone_norm_eps=1e-5, **overrides)
        ref = _tiny_timm_hybrid().eval()
        ref.load_pretrained(str(path))
        torch.testing.assert_close(as_timm(x).logits, ref(x), atol=1e-4, rtol=1e-4)
        # at 64px the position embeddings are resized and the trunk sees a larger image
        big = convert.load_official(path, "vit-base-r50-s16-384", **{**overrides, "image_size": 64})
        assert big.vit.embeddings.position_embeddings.shape == (1, 1 + 16, 32)
        torch.testing.assert_close(big(_images(64, 64)).logits,
                                   source(_images(64, 64), interpolate_pos_encoding=True).logits, atol=1e-5, rtol=1e-5)


def test_load_official_reports_arrays_it_did_not_place(tmp_path, caplog):
    arrays = export_google(_randomize(hf_vision.ViTForImageClassification(tiny_vit())))
    arrays["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query_norm/scale"] = np.ones(8, np.float32)
    np.savez(tmp_path / "odd.npz", **arrays)
    with caplog.at_level("WARNING"):
        convert.load_official(tmp_path / "odd.npz", "vit-base-patch16-224", image_size=32, patch_size=8, **TINY_SIZES)
    assert "query_norm/scale" in caplog.text


def test_load_official_checks_the_preset_and_keeps_a_new_head(tmp_path):
    source = _randomize(hf_vision.ViTForImageClassification(tiny_vit()))
    path = _write(tmp_path, source)
    with pytest.raises(ValueError, match="hidden_size"):
        convert.load_official(path, "vit-base-patch16-224", image_size=32)  # file is 32 wide, preset 768
    with pytest.raises(ValueError, match="plain ViT"):
        convert.load_official(path, "vit-base-r50-s16-224", image_size=32, **TINY_SIZES)
    with pytest.raises(ValueError, match="vit-base-patch16-224"):
        convert.load_official(path, "vit-tiny-nonexistent")
    fresh = convert.load_official(path, "vit-base-patch16-224", image_size=32, patch_size=8, num_labels=7, **TINY_SIZES)
    assert fresh.classifier.out_features == 7
    x = _images(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh.vit(x).pooler_output, source.vit(x).pooler_output, atol=1e-5, rtol=1e-5)


def test_load_strictly_names_what_does_not_fit():
    """The one strict loader of every forward converter: unplaced, unfilled and misshapen tensors are errors."""
    model = torch.nn.Linear(3, 2)
    good = {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}
    assert convert.load_strictly(model, good, "src") is model and not model.training
    torch.testing.assert_close(model.weight, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"src does not fit Linear: missing keys \['bias'\], unexpected keys \['w'\]"):
        convert.load_strictly(model, {"weight": torch.ones(2, 3), "w": torch.ones(1)}, "src")
    with pytest.raises(RuntimeError, match=r"weight: src has shape \(3, 2\), Linear expects \(2, 3\)"):
        convert.load_strictly(model, {**good, "weight": torch.ones(3, 2)}, "src")
