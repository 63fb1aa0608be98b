"""What is unique to Swin: windows, the shift mask, any input size without per-input state, the shape cache,
bias-table resizing on load, the backbone contract, ablation switches, config errors and preset sizes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import transformers

import hf_vision
from hf_vision.presets import PRESETS
from hf_vision.modeling.swin.windows import (
    MASK_VALUE,
    permute_tokens,
    shift_mask,
    window_order,
    window_partition,
    window_reverse,
)

from .cases import tiny_swin


def _pixels(*size: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def _model(cls=hf_vision.SwinModel, **overrides):
    torch.manual_seed(0)
    return cls(tiny_swin(**overrides)).eval()


@pytest.mark.parametrize("shape, window", [((2, 8, 8, 3), 4), ((1, 6, 10, 5), 2), ((3, 7, 14, 2), 7)])
def test_window_partition_is_inverted_and_cuts_true_windows(shape, window):
    x = torch.randn(shape)
    windows = window_partition(x, window)
    b, h, w, c = shape
    assert windows.shape == (b * (h // window) * (w // window), window * window, c)
    assert torch.equal(window_reverse(windows, window, h, w), x)
    # window k of image 0 is the k-th (row-major) w x w tile, flattened row-major
    cols = w // window
    for k in range(h // window * cols):
        r, q = divmod(k, cols)
        tile = x[0, r * window:(r + 1) * window, q * window:(q + 1) * window].reshape(-1, c)
        assert torch.equal(windows[k], tile)


@pytest.mark.parametrize("height, width, window, shift", [(8, 8, 4, 2), (6, 10, 2, 1), (14, 21, 7, 3), (4, 4, 4, 0)])
def test_window_order_is_roll_then_partition(height, width, window, shift):
    x = torch.randn(2, height, width, 3)
    reference = window_partition(torch.roll(x, shifts=(-shift, -shift), dims=(1, 2)), window)
    order = window_order(height, width, window, shift)
    gathered = x.reshape(2, -1, 3)[:, order].reshape(reference.shape)
    assert torch.equal(gathered, reference)
    inverse = torch.argsort(order)
    back = permute_tokens(gathered.reshape(2, -1, 3), inverse, order).view_as(x)
    assert torch.equal(back, x)


def test_permute_tokens_gradient_is_the_inverse_gather():
    x = torch.randn(2, 16, 3, requires_grad=True)
    order = window_order(4, 4, 2, 1)
    grad = torch.randn(2, 16, 3)
    permute_tokens(x, order, torch.argsort(order)).backward(grad)
    reference = torch.zeros(2, 16, 3).index_add_(1, order, grad)  # autograd's rule for a gather, by hand
    assert torch.equal(x.grad, reference)


@pytest.mark.parametrize("height, width, window, shift", [(8, 8, 4, 2), (12, 8, 4, 2), (14, 21, 7, 3)])
def test_shift_mask_separates_tokens_that_were_not_neighbours(height, width, window, shift):
    """After torch.roll, two tokens of one window may attend iff they were within a window of each other in the
    unrolled map (the rest were wrapped around from the opposite border)."""
    mask = shift_mask(height, width, window, shift)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([rows, cols], dim=-1).float()  # (H, W, 2) original coordinates
    rolled = torch.roll(coords, shifts=(-shift, -shift), dims=(0, 1))
    windows = window_partition(rolled[None], window)  # (nW, N, 2)
    distance = (windows[:, :, None, :] - windows[:, None, :, :]).abs().amax(-1)  # Chebyshev, (nW, N, N)
    expected = torch.where(distance < window, 0.0, MASK_VALUE)
    assert mask.shape == expected.shape
    assert torch.equal(mask, expected)
    assert (mask == MASK_VALUE).any()  # the border windows really are masked


@pytest.mark.parametrize("size", [(37, 45), (31, 64), (64, 20), (5, 7)])
def test_any_input_size_pads_and_crops_back(size):
    model = _model(hf_vision.SwinBackbone, out_features=["stem", "stage1", "stage2", "stage3"])
    out = model(_pixels(*size, batch=1), output_hidden_states=True)
    h, w = math.ceil(size[0] / 4), math.ceil(size[1] / 4)
    for stage, fmap in zip(model.out_features, out.feature_maps):
        assert fmap.shape[-2:] == (h, w), stage
        assert torch.isfinite(fmap).all()
        if stage != "stem":
            h, w = math.ceil(h / 2), math.ceil(w / 2)


def test_no_state_mutation_across_input_sizes():
    """transformers 5.24 shrinks a layer's window for good after one small input; ours decides per call."""
    model = _model(window_size=4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    geometry = [(b.window_size, b.shift_size) for stage in model.layers for b in stage.blocks]
    x = _pixels(64, 64)
    before = model(x).last_hidden_state
    model(_pixels(16, 16))  # every map is no larger than a window: one unshifted window each
    model(_pixels(24, 40))
    after = model(x).last_hidden_state
    assert torch.equal(before, after)
    assert [(b.window_size, b.shift_size) for stage in model.layers for b in stage.blocks] == geometry
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_masks_and_index_are_built_once_per_geometry():
    model = _model()
    cache = model.window_cache
    x = _pixels(32, 32)
    model(x)
    first = cache.builds
    assert first > 0
    model(x)
    model(_pixels(32, 32, batch=5))  # batch size is not part of the geometry
    assert cache.builds == first
    model(_pixels(48, 40))
    grown = cache.builds
    assert grown > first
    model(x)
    assert cache.builds == grown
    assert not any("mask" in k or "index" in k for k in model.state_dict())  # shape-only, never saved


def test_cache_filled_under_inference_mode_serves_training():
    model = _model()
    x = _pixels(32, 32)
    with torch.inference_mode():
        model(x)
    model.train()
    model(x).last_hidden_state.mean().backward()  # would raise if a cached mask were an inference tensor
    assert model.layers[0].blocks[1].attn.relative_position_bias_table.grad is not None


def test_cached_tensors_are_not_shared_across_models():
    a, b = _model(), _model()
    a(_pixels(32, 32))
    assert a.window_cache.builds > 0 and b.window_cache.builds == 0


def _save_window7(tmp_path, **overrides):
    torch.manual_seed(0)
    config = tiny_swin(image_size=56, window_size=7, depths=(2, 2), num_heads=(1, 2), **overrides)
    model = hf_vision.SwinForImageClassification(config).eval()
    model.save_pretrained(tmp_path)
    return model


def test_loading_at_window12_resizes_bias_tables_bicubically(tmp_path):
    saved = _save_window7(tmp_path, use_absolute_position_embeddings=True)
    loaded = hf_vision.SwinForImageClassification.from_pretrained(tmp_path, image_size=96, window_size=12)
    key = "swin.layers.1.blocks.1.attn.relative_position_bias_table"
    old, new = saved.state_dict()[key], loaded.state_dict()[key]
    assert old.shape == (13 * 13, 2) and new.shape == (23 * 23, 2)
    grid = old.T.reshape(1, 2, 13, 13)
    expected = F.interpolate(grid, size=(23, 23), mode="bicubic", align_corners=False).reshape(2, -1).T
    torch.testing.assert_close(new, expected)
    pos = loaded.swin.absolute_pos_embed
    assert pos.shape == (1, 24 * 24, 16)
    expected_pos = F.interpolate(saved.swin.absolute_pos_embed.reshape(1, 14, 14, 16).permute(0, 3, 1, 2),
                                 size=(24, 24), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos, expected_pos.permute(0, 2, 3, 1).reshape(1, -1, 16))
    assert torch.isfinite(loaded(_pixels(96, 96)).logits).all()


def test_backbone_strides_channels_and_out_features():
    config = tiny_swin(image_size=64, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), out_indices=[1, 2, 3, 4])
    assert config.out_features == ["stage1", "stage2", "stage3", "stage4"]
    model = hf_vision.SwinBackbone(config).eval()
    assert model.stage_names == ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert model.channels == [16, 32, 64, 128]
    maps = model(_pixels(64, 64)).feature_maps
    assert [tuple(m.shape[1:]) for m in maps] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]
    assert [64 // m.shape[-1] for m in maps] == [4, 8, 16, 32]
    assert set(model.hidden_states_norms) == {"stage1", "stage2", "stage3", "stage4"}
    model.config.out_features = ["stage2"]  # transformers keeps indices aligned
    assert model.config.out_indices == [2]
    default = hf_vision.SwinBackbone(tiny_swin())
    assert default.out_features == ["stage3"]  # transformers' default: the last stage


def test_auto_backbone_and_a_transformers_segmentation_head(tmp_path):
    config = tiny_swin(image_size=64, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
                       out_features=["stage1", "stage2", "stage3", "stage4"])
    backbone = transformers.AutoBackbone.from_config(config)
    assert type(backbone) is hf_vision.SwinBackbone
    backbone.save_pretrained(tmp_path)
    reloaded = transformers.AutoBackbone.from_pretrained(str(tmp_path)).eval()
    assert type(reloaded) is hf_vision.SwinBackbone and reloaded.out_features == config.out_features
    x = _pixels(64, 64)
    for a, b in zip(reloaded(x).feature_maps, backbone.eval()(x).feature_maps):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # a transformers head builds our backbone from its config through AutoBackbone and consumes its channels
    head_config = transformers.UperNetConfig(backbone_config=config, hidden_size=16, auxiliary_in_channels=64,
                                             num_labels=3)
    segmenter = transformers.UperNetForSemanticSegmentation(head_config).eval()
    assert type(segmenter.backbone) is hf_vision.SwinBackbone
    assert segmenter(x).logits.shape == (2, 3, 64, 64)


def test_ablation_switches():
    shifted = _model()
    plain = _model(shifted_windows=False)
    assert all(b.shift_size == 0 for stage in plain.layers for b in stage.blocks)
    assert any(b.shift_size for stage in shifted.layers for b in stage.blocks)
    plain.load_state_dict(shifted.state_dict())  # the same weights: only the partition differs
    x = _pixels(32, 32)
    assert not torch.allclose(plain(x).last_hidden_state, shifted(x).last_hidden_state, atol=1e-4)
    assert not any(k[0] == "mask" for k in plain.window_cache._store)

    no_bias = _model(use_relative_position_bias=False)
    assert not any("relative_position_bias_table" in k for k in no_bias.state_dict())
    tables = sum(p.numel() for n, p in shifted.named_parameters() if "relative_position_bias_table" in n)
    assert sum(p.numel() for p in shifted.parameters()) - sum(p.numel() for p in no_bias.parameters()) == tables

    ape = _model(use_absolute_position_embeddings=True)
    assert ape.absolute_pos_embed.shape == (1, 8 * 8, 16) and ape.absolute_pos_embed.abs().sum() > 0
    assert shifted.absolute_pos_embed is None


def test_attentions_are_per_block_and_window_shaped():
    model = _model()
    out = model(_pixels(32, 32), output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == sum(model.config.depths)
    # stage 1: 8x8 map, window 2 -> 16 windows of 4 tokens, 1 head
    assert out.attentions[0].shape == (2, 16, 1, 4, 4)
    assert [h.shape[1:] for h in out.reshaped_hidden_states] == [(16, 8, 8), (16, 8, 8), (32, 4, 4), (64, 2, 2)]


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(num_heads=(1, 2)), "num_heads"),
        (dict(num_heads=2), "num_heads=2 must have one entry per stage"),  # an int where a list is expected
        (dict(depths=2), "depths=2 must be a non-empty list"),
        (dict(num_heads=(1, 3, 4)), "num_heads[1]"),
        (dict(window_size=0), "window_size"),
        (dict(depths=()), "depths"),
        (dict(depths=(2, 0, 1)), "depths"),
        (dict(patch_size=0), "patch_size"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
        (dict(hidden_act="nope"), "hidden_act"),
        (dict(out_features=["stage7"]), "out_features"),
        (dict(out_indices=[9]), "out_indices"),
        (dict(image_mean=(0.5,)), "image_mean"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        tiny_swin(**overrides)


def test_an_int_for_the_per_stage_heads_through_its_alias_names_the_field():
    """`num_attention_heads` (transformers' name, an alias of num_heads) set to an int, as a ViT-minded override
    would: the error names the field instead of a TypeError from len()."""
    with pytest.raises(ValueError, match="num_heads=2 must have one entry per stage"):
        hf_vision.get_config("swin-tiny-patch4-window7-224", num_attention_heads=2)


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("swin-")])
def test_preset_parameter_counts(name):
    with torch.device("meta"):
        model = hf_vision.SwinForImageClassification(hf_vision.get_config(name))
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert model.config.num_labels == 1000
    assert abs(count / PRESETS[name].params_m - 1) < 0.005, (name, count)


def test_published_counts_are_the_papers():
    published = {"swin-tiny-patch4-window7-224": 28.3, "swin-small-patch4-window7-224": 49.6,
                 "swin-base-patch4-window7-224": 87.8, "swin-large-patch4-window7-224": 196.5}
    assert {n: PRESETS[n].params_m for n in published} == published


def test_state_dict_keys_are_the_official_format():
    keys = set(_model(hf_vision.SwinForImageClassification, depths=(2, 1), num_heads=(1, 2)).state_dict())
    for key in ["swin.patch_embed.proj.weight", "swin.patch_embed.norm.weight",
                "swin.layers.0.blocks.1.attn.relative_position_bias_table", "swin.layers.0.blocks.1.attn.qkv.weight",
                "swin.layers.0.blocks.1.attn.proj.bias", "swin.layers.0.blocks.0.norm1.weight",
                "swin.layers.0.blocks.0.mlp.fc2.weight", "swin.layers.0.downsample.reduction.weight",
                "swin.layers.0.downsample.norm.bias", "swin.norm.weight", "classifier.weight"]:
        assert key in keys, key
    assert "swin.layers.0.downsample.reduction.bias" not in keys  # Linear 4C -> 2C without bias


_REMOTE = """
import json, sys
ckpt = sys.argv[1]
import torch
from transformers import AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained(ckpt, trust_remote_code=True).eval()
x = torch.randn(2, 3, 37, 45, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    print(json.dumps({"module": type(model).__module__, "logits": model(x).logits.tolist()}))
"""


def test_remote_code_checkpoint_runs_without_the_package(tmp_path):
    import json
    import subprocess

    from .isolation import isolated_command

    model = _model(hf_vision.SwinForImageClassification)
    model.save_pretrained(tmp_path / "ckpt")
    auto_map = json.loads((tmp_path / "ckpt" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoBackbone"] == "modeling_swin.SwinBackbone"
    result = subprocess.run(
        isolated_command(_REMOTE, str(tmp_path / "ckpt")), cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                          "TRANSFORMERS_VERBOSITY": "error"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["module"].startswith("transformers_modules")
    x = torch.randn(2, 3, 37, 45, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(payload["logits"]), model(x).logits, atol=1e-5, rtol=1e-5)


def test_broadcast_bias_path_matches_the_fused_path():
    """CPU training broadcasts the per-window bias instead of copying it per image; same numbers as sdpa."""
    model = _model(window_size=4)
    x = _pixels(64, 48, batch=3)
    with torch.no_grad():
        fused = model(x).last_hidden_state  # eval, no grad: sdpa with the batch-sized bias
    model.train()  # drop rates are 0 in the tiny config: train mode changes only the attention path
    broadcast = model(x).last_hidden_state
    assert broadcast.requires_grad
    torch.testing.assert_close(broadcast, fused, atol=1e-5, rtol=1e-5)


def test_benchmark_suite_builds_the_same_model_in_three_libraries():
    from hf_vision import benchmark

    settings = benchmark.Settings(
        preset="swin-tiny-patch4-window7-224", batch_size=2, repeats=1, warmup=0, modes=("inference", "train"),
        references=("timm", "transformers"), memory=False, variants=("plain",), threads=1, peak_size=128,
        # window 2 keeps every stage map at least a window wide: transformers 5.24 fails on smaller maps
        config_overrides={"image_size": 64, "embed_dim": 16, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 2, 4],
                          "window_size": 2},
    )
    report = benchmark.run_benchmark(settings)
    params = {name: res["params_m"] for name, res in report["results"].items()}
    assert set(params) == {"ours", "timm", "transformers"} and len(set(params.values())) == 1, params
    assert all(report["ratios"][f"ours/{ref}"][mode] > 0 for ref in ("timm", "transformers") for mode in settings.modes)
    # Swin's attention carries a bias, so the CPU kernel differs from ViT's: all three must still be counted alike
    flops = {name: res["gflops_per_img"] for name, res in report["results"].items()}
    assert flops["ours"] == flops["timm"] == flops["transformers"], flops


def test_backbone_from_a_classification_checkpoint(tmp_path):
    """AutoBackbone on a classifier checkpoint: every trunk weight loads, the final norm becomes stage4's norm,
    and the stage4 feature map equals the classifier's normalised last hidden state."""
    from transformers import AutoBackbone

    config = hf_vision.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=2,
                        num_labels=3, out_features=["stage1", "stage2"])
    classifier = hf_vision.SwinForImageClassification(config).eval()
    with torch.no_grad():  # a non-trivial final norm, so a fresh one would be detected
        classifier.swin.norm.weight.uniform_(0.5, 1.5)
        classifier.swin.norm.bias.uniform_(-0.5, 0.5)
    classifier.save_pretrained(tmp_path)
    backbone = AutoBackbone.from_pretrained(tmp_path).eval()
    assert type(backbone) is hf_vision.SwinBackbone
    torch.testing.assert_close(backbone.hidden_states_norms["stage2"].weight, classifier.swin.norm.weight)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = backbone(x).feature_maps
        tokens = classifier.swin(x).last_hidden_state  # (B, H*W, C) after the final norm
    b, c, h, w = maps[-1].shape
    # (B, C, H, W) -> (B, H*W, C)
    torch.testing.assert_close(maps[-1].flatten(2).transpose(1, 2), tokens, atol=1e-5, rtol=1e-5)


def test_checkpoint_saved_with_the_old_head_name_still_loads(tmp_path):
    """The classifier is `classifier` in every family; a checkpoint saved when Swin's was `head` loads the same."""
    from safetensors.torch import load_file, save_file

    model = _model(hf_vision.SwinForImageClassification, depths=(2, 1), num_heads=(1, 2)).eval()
    assert isinstance(model.classifier, torch.nn.Linear) and not hasattr(model, "head")
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    renamed = {("head." + k[len("classifier."):] if k.startswith("classifier.") else k): v for k, v in weights.items()}
    assert {"head.weight", "head.bias"} <= renamed.keys() and not any(k.startswith("classifier.") for k in renamed)
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = hf_vision.SwinForImageClassification.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, *model.config.image_size) if isinstance(model.config.image_size, (tuple, list)) else \
        torch.randn(2, 3, model.config.image_size, model.config.image_size)
    torch.testing.assert_close(loaded.classifier.weight, model.classifier.weight, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)
