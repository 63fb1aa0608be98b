"""Swin conversion: timm, transformers and Microsoft's checkpoint layout, each against the source's own outputs."""
from __future__ import annotations

import re

import pytest
import timm
import torch
import transformers

import hf_vision
from hf_vision import convert

TIMM_TINY = dict(img_size=64, window_size=4, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))
FEATURES = ["stem", "stage1", "stage2", "stage3", "stage4"]


def _perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (unit norms and zero biases would hide a mis-mapped key)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def _timm(num_classes: int = 5):
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=num_classes, **TIMM_TINY)
    return _perturb(model)


def _pixels(*size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))


def test_from_timm_matches_logits_including_clamped_stage_windows():
    source = _timm()
    # stage 4 sees a 2x2 map, so timm built it with window 2 and a 3x3 table: ours embeds it in a 7x7 table
    assert source.layers[3].blocks[0].attn.relative_position_bias_table.shape[0] == 9
    ours = convert.from_timm(source)
    assert isinstance(ours, hf_vision.SwinForImageClassification)
    assert ours.swin.layers[3].blocks[0].attn.relative_position_bias_table.shape[0] == 49
    x = _pixels(64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, source(x), atol=1e-4, rtol=1e-4)


def test_from_timm_headless_gives_the_pooled_features():
    source = _timm(num_classes=0)
    ours = convert.from_timm(source)
    assert isinstance(ours, hf_vision.SwinModel)
    x = _pixels(64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).pooler_output, source(x), atol=1e-4, rtol=1e-4)


def test_conversion_is_sensitive_to_every_weight_class():
    """Guard against a parity test that passes vacuously: a changed norm weight must change the logits."""
    source = _timm()
    ours = convert.from_timm(source)
    x = _pixels(64, 64)
    with torch.no_grad():
        ours.swin.layers[1].downsample.norm.weight.mul_(1.5)
        assert not torch.allclose(ours(x).logits, source(x), atol=1e-4)


def _hf(cls, *, window: int = 2, ape: bool = False, image: int = 64):
    config = transformers.SwinConfig(image_size=image, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                                     window_size=window, num_labels=5, use_absolute_embeddings=ape,
                                     out_features=FEATURES)
    torch.manual_seed(0)
    return _perturb(cls(config))


@pytest.mark.parametrize(
    "ape, size",
    [(False, (64, 64)), (True, (64, 64)), (False, (37, 45)), (False, (36, 44)), (True, (36, 44))],
    ids=["64", "64-ape", "37x45-patch-and-window-padding", "36x44-window-padding", "36x44-ape-resampled"],
)
def test_from_transformers_model_and_classifier(ape, size):
    x = _pixels(*size)
    # transformers resizes absolute position embeddings only when asked (and only for whole patches: 36x44)
    kwargs = {"interpolate_pos_encoding": True} if ape and size != (64, 64) else {}
    base = _hf(transformers.SwinModel, ape=ape)
    ours = convert.from_transformers(base)
    assert type(ours) is hf_vision.SwinModel
    with torch.no_grad():
        ref, out = base(x, **kwargs), ours(x)
        torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out.pooler_output, ref.pooler_output, atol=1e-4, rtol=1e-4)
    clf = _hf(transformers.SwinForImageClassification, ape=ape)
    ours = convert.from_transformers(clf)
    assert type(ours) is hf_vision.SwinForImageClassification and ours.config.num_labels == 5
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, clf(x, **kwargs).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("window", [2, 4], ids=["window2", "window4-always-partition"])
def test_from_transformers_backbone(window):
    """Window 4 on 64 px leaves stage 4 a 2x2 map: both backbones pad it to a whole shifted window."""
    source = _hf(transformers.SwinBackbone, window=window)
    ours = convert.from_transformers(source)
    assert type(ours) is hf_vision.SwinBackbone
    assert ours.out_features == source.out_features and ours.channels == source.channels
    x = _pixels(64, 64)
    with torch.no_grad():
        ref, out = source(x).feature_maps, ours(x).feature_maps
    assert len(out) == len(ref) == 5
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def _official_layout(source) -> dict[str, torch.Tensor]:
    """A timm model's weights in Microsoft's release layout: merging at the end of the previous stage,
    `head.weight`, plus the shape-only buffers the release carries (relative_position_index, attn_mask)."""
    out = {}
    for key, value in source.state_dict().items():
        match = re.match(r"^layers\.(\d+)\.downsample\.(.*)$", key)
        if match:
            key = f"layers.{int(match.group(1)) - 1}.downsample.{match.group(2)}"
        key = key.replace("head.fc.", "head.")
        out[key] = value.clone()
    for i, stage in enumerate(source.layers):
        for j, block in enumerate(stage.blocks):
            n = block.window_size[0] * block.window_size[1]
            out[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = torch.zeros(n, n, dtype=torch.long)
            if any(block.shift_size):
                out[f"layers.{i}.blocks.{j}.attn_mask"] = torch.zeros(4, n, n)
    return out


def test_load_official_reads_microsofts_layout(tmp_path):
    source = _timm()
    path = tmp_path / "swin_tiny_synthetic.pth"
    torch.save({"model": _official_layout(source), "epoch": 300}, path)
    ours = convert.load_official(path, "swin-tiny-patch4-window7-224", image_size=64, window_size=4, embed_dim=16,
                                 depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))
    assert ours.config.num_labels == 5  # taken from the checkpoint's head
    x = _pixels(64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, source(x), atol=1e-4, rtol=1e-4)


def test_load_official_into_a_larger_window_resizes_tables(tmp_path):
    """A window-7 release loaded for window-12 fine-tuning: every table becomes 23x23, bicubically."""
    source = _timm()
    path = tmp_path / "swin.pth"
    torch.save({"model": _official_layout(source)}, path)
    ours = convert.load_official(path, "swin-base-patch4-window12-384", image_size=192, embed_dim=16,
                                 depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))
    tables = [m.relative_position_bias_table for m in ours.modules() if hasattr(m, "relative_position_bias_table")]
    assert tables and all(t.shape[0] == 23 * 23 for t in tables)
    assert torch.isfinite(ours(_pixels(192, 192, batch=1)).logits).all()


def test_load_official_refuses_a_foreign_layout(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(RuntimeError, match="missing keys"):
        convert.load_official(path, "swin-tiny-patch4-window7-224", embed_dim=16, depths=(1,), num_heads=(1,))
