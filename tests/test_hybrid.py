"""What is unique to the R50+ViT hybrid: the ResNet trunk (stride, TF 'SAME' padding, weight standardisation,
GroupNorm), its config checks, the preset sizes, and that it travels as remote code like ViT."""
from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch

import hf_vision
from hf_vision import HybridConfig, HybridForImageClassification, HybridModel
from hf_vision.modeling.hybrid.bit_resnet import ResNetV2Trunk, StdConv2d, ZeroInitGroupNorm, same_padding

from .cases import tiny_hybrid, tiny_vit

timm = pytest.importorskip("timm")


def test_same_padding_is_tensorflows_rule():
    # hand-computed TF 'SAME' totals: out = ceil(n / s), pad = (out - 1) * s + k - n, extra pixel after
    assert same_padding(224, 7, 2) == (2, 3)  # stem conv on even input: asymmetric
    assert same_padding(225, 7, 2) == (3, 3)
    assert same_padding(112, 3, 2) == (0, 1)  # stem max-pool / stride-2 3x3 conv on even input
    assert same_padding(113, 3, 2) == (1, 1)
    assert same_padding(56, 3, 1) == (1, 1)
    assert same_padding(56, 1, 2) == (0, 0) and same_padding(57, 1, 2) == (0, 0)


def test_r50_trunk_has_stride_16_and_1024_channels():
    trunk = ResNetV2Trunk(3, (3, 4, 9), 64).eval()
    assert trunk.out_channels == 1024 and trunk.stride == 16
    with torch.no_grad():
        assert trunk(torch.randn(1, 3, 64, 96)).shape == (1, 1024, 4, 6)
        # odd sizes round up (ceil), as TF's SAME does at every stride-2 layer
        assert trunk(torch.randn(1, 3, 33, 47)).shape == (1, 1024, 3, 3)


@pytest.mark.parametrize("image_size", [32, 64])
def test_hybrid_token_grid_follows_stride_16(image_size):
    model = HybridModel(tiny_hybrid(image_size=image_size)).eval()
    out = model(torch.randn(2, 3, image_size, image_size))
    assert out.last_hidden_state.shape == (2, 1 + (image_size // 16) ** 2, 32)
    assert model.config.grid_stride == 16 and model.config.backbone_channels == 4 * 8 * 2**2
    assert model.embeddings.patch_embed.proj.in_channels == 128


def _timm_trunk(*, same: bool):
    from timm.layers import GroupNormAct, StdConv2d as TimmStdConv2d, StdConv2dSame
    from timm.models.resnetv2 import ResNetV2

    conv = partial(StdConv2dSame if same else TimmStdConv2d, eps=1e-8)
    return ResNetV2(layers=(1, 2, 1), channels=(32, 64, 128), stem_chs=8, num_classes=0, global_pool="",
                    preact=False, stem_type="same" if same else "", conv_layer=conv,
                    norm_layer=partial(GroupNormAct, num_groups=4)).eval()


@pytest.mark.parametrize("size", [(32, 32), (33, 35), (31, 30), (17, 50)])
def test_same_padding_matches_timm_tf_port_on_odd_sizes(size):
    """timm's StdConv2dSame/MaxPool2dSame are an independent port of TF padding; we must agree on any size."""
    ours = ResNetV2Trunk(3, (1, 2, 1), 8, groups=4, norm_eps=1e-5, std_eps=1e-8, std_style="timm").eval()
    ref = _timm_trunk(same=True)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()  # random affine GroupNorms too
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = ref.forward_features(x)
        torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)
        # and the padding matters: PyTorch's symmetric padding gives another answer with the same weights
        symmetric = _timm_trunk(same=False)
        symmetric.load_state_dict(ref.state_dict())
        assert (symmetric.forward_features(x) - expected).abs().max() > 1e-3


def test_weight_standardisation_formulas():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3) * 0.05 + 0.01
    flat = w.numpy().reshape(6, -1).astype(np.float64)
    centred = flat - flat.mean(1, keepdims=True)
    google = StdConv2d(4, 6, 3, eps=1e-5, style="google")
    timm_style = StdConv2d(4, 6, 3, eps=1e-8, style="timm")
    with torch.no_grad():
        google.weight.copy_(w)
        timm_style.weight.copy_(w)
        expected_google = centred / (flat.std(1, keepdims=True) + 1e-5)  # Flax: (w - mean) / (std + eps)
        expected_timm = centred / np.sqrt(flat.var(1, keepdims=True) + 1e-8)
        for conv, expected in ((google, expected_google), (timm_style, expected_timm)):
            got = conv.standardized_weight().numpy().reshape(6, -1)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="style"):
        StdConv2d(4, 6, 3, style="pytorch")


def test_default_config_is_googles_r50_vit_b16():
    config = HybridConfig()
    assert config.backbone_layers == [3, 4, 9] and config.backbone_width == 64 and config.patch_size == 1
    assert config.grid_stride == 16 and config.backbone_channels == 1024
    assert (config.backbone_norm_groups, config.backbone_norm_eps) == (32, 1e-6)  # flax.linen.GroupNorm defaults
    assert (config.backbone_std_style, config.backbone_std_eps) == ("google", 1e-5)


@pytest.mark.parametrize("name, image_size", [("vit-base-r50-s16-224", 224), ("vit-base-r50-s16-384", 384)])
def test_preset_parameter_counts(name, image_size):
    preset = hf_vision.PRESETS[name]
    config = hf_vision.get_config(name)
    assert config.image_size == image_size and config.num_labels == 1000 and type(config) is HybridConfig
    with torch.device("meta"):
        model = HybridForImageClassification(config)
    total = sum(p.numel() for p in model.parameters())
    head = 768 * 1000 + 1000
    assert sum(p.numel() for p in model.classifier.parameters()) == head
    # the published R50+ViT-B/16 figure (98.0M; timm reports 97.9M for the headless in21k model) has no head
    assert abs((total - head) / 1e6 - preset.params_m) / preset.params_m < 0.005, total
    if name.endswith("224"):
        assert abs((total - head) / 1e6 - 98.0) / 98.0 < 0.005


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(image_size=40), "image_size"),  # not a multiple of 16 * patch_size
        (dict(image_size=32, patch_size=4), "image_size"),  # 32 % 64
        (dict(backbone_width=6, backbone_norm_groups=4), "backbone_width"),
        (dict(backbone_layers=(1, 0, 1)), "backbone_layers"),
        (dict(backbone_std_style="ws"), "backbone_std_style"),
        (dict(backbone_norm_eps=0.0), "backbone_norm_eps"),
        (dict(pooling="max"), "pooling"),  # ViT's checks still apply
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_hybrid(**overrides)


def test_fresh_trunk_init():
    model = HybridModel(tiny_hybrid())
    trunk = model.embeddings.patch_embed.backbone
    block = trunk.stages[0].blocks[0]
    assert isinstance(block.norm3, ZeroInitGroupNorm) and torch.all(block.norm3.weight == 0)  # blocks start as identity
    assert torch.all(block.norm1.weight == 1) and torch.all(block.norm1.bias == 0)
    assert torch.all(trunk.stem.norm.weight == 1)
    fan_out = trunk.stem.conv.weight[0].numel() // 3 * trunk.stem.conv.out_channels  # 7*7*8
    assert abs(trunk.stem.conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.3 * (2 / fan_out) ** 0.5
    assert model.embeddings.position_embeddings.std() > 0.01  # ViT's trunc-normal, not zeros


def test_position_embeddings_resize_on_load_and_interpolation_agree(tmp_path):
    torch.manual_seed(0)
    model = HybridForImageClassification(tiny_hybrid()).eval()
    model.save_pretrained(tmp_path)
    bigger = HybridForImageClassification.from_pretrained(tmp_path, image_size=64).eval()
    assert bigger.vit.embeddings.position_embeddings.shape == (1, 1 + 16, 32)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bigger(x).logits, model(x, interpolate_pos_encoding=True).logits)
        # odd input: SAME padding gives a 3x3 grid from 40x36 pixels
        out = model(torch.randn(1, 3, 40, 36), interpolate_pos_encoding=True, output_hidden_states=True)
        assert out.hidden_states[0].shape == (1, 1 + 9, 32)
        with pytest.raises(ValueError, match="interpolate_pos_encoding"):
            model(torch.randn(1, 3, 64, 64))


def test_remote_code_without_the_package(tmp_path):
    from .test_remote_code import run_isolated

    torch.manual_seed(0)
    config = tiny_hybrid(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    model = HybridForImageClassification(config).eval()
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    saved = json.loads((ckpt / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_hybrid.HybridConfig",
        "AutoModel": "modeling_hybrid.HybridModel",
        "AutoModelForImageClassification": "modeling_hybrid.HybridForImageClassification",
    }
    assert (ckpt / "bit_resnet.py").exists() and (ckpt / "modeling_vit.py").exists()
    x = torch.randn(2, 3, 32, 32)
    payload = run_isolated(ckpt, x, tmp_path)
    assert all(module.startswith("transformers_modules") for module in payload["classes"])
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(payload["logits"]), model(x).logits, atol=1e-5, rtol=1e-5)
    assert {p["label"] for p in payload["preds"]} == {"a", "b", "c"}


def test_state_dict_keys_are_the_checkpoint_format():
    """Attribute names are the checkpoint format (and mirror timm's ResNetV2 names): freeze them."""
    model = HybridModel(tiny_hybrid(backbone_layers=(2,), num_hidden_layers=1))
    trunk = {k[len("embeddings.patch_embed."):] for k in model.state_dict() if k.startswith("embeddings.patch_embed.")}
    expected = {"proj.weight", "proj.bias", "backbone.stem.conv.weight", "backbone.stem.norm.weight",
                "backbone.stem.norm.bias"}
    for j in (0, 1):
        block = f"backbone.stages.0.blocks.{j}."
        expected |= {f"{block}conv{r}.weight" for r in (1, 2, 3)}
        expected |= {f"{block}norm{r}.{p}" for r in (1, 2, 3) for p in ("weight", "bias")}
    down = "backbone.stages.0.blocks.0.downsample."
    expected |= {down + "conv.weight", down + "norm.weight", down + "norm.bias"}  # 8 -> 32 channels needs a projection
    assert trunk == expected
    rest = {k for k in model.state_dict() if not k.startswith("embeddings.patch_embed.")}
    # everything after the patch embedding is ViT's, under ViT's names (composition, not a copy)
    vit = hf_vision.ViTModel(tiny_vit(num_hidden_layers=1, image_size=32, patch_size=16)).state_dict()
    assert rest == {k for k in vit if not k.startswith("embeddings.patch_embed.")}


def test_checkpointing_covers_the_trunk():
    """With checkpointing on, every bottleneck is recomputed in backward (the trunk's maps dominate memory)."""
    from hf_vision.modeling.hybrid.bit_resnet import Bottleneck

    model = HybridForImageClassification(tiny_hybrid()).train()
    model.activation_checkpointing_enable()
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 3 and all(b.gradient_checkpointing for b in blocks)
    calls = []
    for block in blocks:
        block.conv1.register_forward_hook(lambda *args: calls.append(1))  # runs inside the checkpointed forward
    out = model(torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 1]))
    assert len(calls) == 3
    out.loss.backward()
    assert len(calls) == 6  # each bottleneck ran again during backward
