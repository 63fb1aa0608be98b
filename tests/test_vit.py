"""What is unique to the ViT family: config validation, pooling/head variants, resolutions, loss conventions."""
from __future__ import annotations

import pytest
import torch

import hf_vision
from hf_vision import ViTConfig, ViTForImageClassification, ViTModel

from .cases import tiny_vit


@pytest.mark.parametrize(
    "overrides, field, accepted",
    [
        (dict(image_size=30), "image_size", "patch_size"),
        (dict(hidden_size=30), "hidden_size", "num_attention_heads"),
        (dict(pooling="max"), "pooling", "'cls', 'gap'"),
        (dict(position_embedding_type="rope"), "position_embedding_type", "'learned', 'sincos2d', 'none'"),
        (dict(classifier_norm="layernorm"), "classifier_norm", "'none', 'batchnorm'"),
        (dict(drop_path_rate=1.5), "drop_path_rate", "[0, 1)"),
        (dict(pooling="cls", class_token=False), "class_token", "pooling='gap'"),
        (dict(image_size=(32, 33)), "image_size", "patch_size"),
    ],
)
def test_invalid_config_names_field_and_accepted_values(overrides, field, accepted):
    with pytest.raises(ValueError) as err:
        tiny_vit(**overrides)
    assert field in str(err.value) and accepted in str(err.value)


def test_pooling_variants_differ_and_follow_definitions():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    cls_model = ViTModel(tiny_vit()).eval()
    out = cls_model(x)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[:, 0])
    gap_model = ViTModel(tiny_vit(pooling="gap")).eval()
    gap_model.load_state_dict(cls_model.state_dict(), strict=False)  # norm -> fc_norm differ by name only
    gap = gap_model(x)
    # fc_norm: tokens are not normalised, the pooled mean of patch tokens is
    expected = gap_model.fc_norm(gap.last_hidden_state[:, 1:].mean(1))
    torch.testing.assert_close(gap.pooler_output, expected)
    assert isinstance(gap_model.norm, torch.nn.Identity)


def test_pre_logits_is_linear_tanh():
    model = ViTModel(tiny_vit(representation_size=16)).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.pooler_output.shape == (2, 16)
    manual = torch.tanh(out.last_hidden_state[:, 0] @ model.pre_logits.fc.weight.T + model.pre_logits.fc.bias)
    torch.testing.assert_close(out.pooler_output, manual)


def test_linear_probe_head_is_non_affine_batchnorm():
    model = ViTForImageClassification(tiny_vit(classifier_norm="batchnorm"))
    assert isinstance(model.head_norm, torch.nn.BatchNorm1d) and not model.head_norm.affine


@pytest.mark.parametrize("size", [(48, 48), (40, 24)], ids=["square", "non-square"])
def test_interpolate_pos_encoding(size):
    model = ViTForImageClassification(tiny_vit()).eval()
    x = torch.randn(2, 3, *size)
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        model(x)
    out = model(x, interpolate_pos_encoding=True, output_hidden_states=True)
    assert out.logits.shape == (2, 5)
    assert out.hidden_states[0].shape[1] == 1 + (size[0] // 8) * (size[1] // 8)
    # same size as training: interpolation is the identity
    x32 = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x32, interpolate_pos_encoding=True).logits, model(x32).logits)


def test_interpolated_grid_matches_independent_bicubic_resize():
    model = ViTModel(tiny_vit()).eval()
    emb = model.embeddings
    table = emb.position_embedding_for((6, 3), interpolate=True)
    grid = emb.position_embeddings[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, size=(6, 3), mode="bicubic", align_corners=False)
    torch.testing.assert_close(table[:, 1:], ref.flatten(2).transpose(1, 2))
    torch.testing.assert_close(table[:, :1], emb.position_embeddings[:, :1])


def test_sincos_table_is_exact_at_any_grid():
    model = ViTModel(tiny_vit(position_embedding_type="sincos2d")).eval()
    table = model.embeddings.position_embedding_for((5, 7), interpolate=True)
    dim = 32
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    row, col = 3, 6  # token index 1 + row * 7 + col
    expected = torch.cat([torch.sin(col * omega), torch.cos(col * omega), torch.sin(row * omega), torch.cos(row * omega)])
    torch.testing.assert_close(table[0, 1 + row * 7 + col].double(), expected, atol=1e-6, rtol=0)
    assert table[0, 0].abs().sum() == 0  # class token gets no position


def test_checkpoint_loaded_at_higher_resolution_resizes_position_embeddings(tmp_path):
    model = ViTForImageClassification(tiny_vit()).eval()
    model.save_pretrained(tmp_path)
    bigger = ViTForImageClassification.from_pretrained(tmp_path, image_size=48).eval()
    assert bigger.vit.embeddings.position_embeddings.shape == (1, 1 + 36, 32)
    x = torch.randn(2, 3, 48, 48)
    # loading at 48 must equal running the 32 model with forward-time interpolation
    torch.testing.assert_close(bigger(x).logits, model(x, interpolate_pos_encoding=True).logits, atol=1e-5, rtol=1e-5)
    # every other weight is identical
    ref = model.state_dict()
    for key, value in bigger.state_dict().items():
        if "position_embeddings" not in key:
            torch.testing.assert_close(value, ref[key], atol=0, rtol=0)


def test_problem_types():
    x = torch.randn(4, 3, 32, 32)
    single = ViTForImageClassification(tiny_vit(num_labels=5))
    labels = torch.tensor([0, 1, 2, 3])
    out = single(x, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    assert single.config.problem_type == "single_label_classification"

    multi = ViTForImageClassification(tiny_vit(num_labels=5))
    targets = torch.randint(0, 2, (4, 5)).float()
    out = multi(x, labels=targets)
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets))
    assert multi.config.problem_type == "multi_label_classification"

    regression = ViTForImageClassification(tiny_vit(num_labels=1))
    values = torch.randn(4)
    out = regression(x, labels=values)
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), values))

    bad = ViTForImageClassification(tiny_vit(problem_type="ranking"))
    with pytest.raises(ValueError, match="problem_type"):
        bad(x, labels=labels)


def test_soft_labels_for_mixup():
    model = ViTForImageClassification(tiny_vit(num_labels=5, problem_type="single_label_classification"))
    x = torch.randn(2, 3, 32, 32)
    soft = torch.tensor([[0.7, 0.3, 0, 0, 0], [0, 0, 0.5, 0.5, 0]])
    out = model(x, labels=soft)
    expected = -(soft * out.logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(out.loss, expected)


def test_return_dict_false_gives_tuple():
    model = ViTForImageClassification(tiny_vit()).eval()
    out = model(torch.randn(1, 3, 32, 32), return_dict=False)
    assert isinstance(out, tuple) and out[0].shape == (1, 5)


def test_attention_weights_match_manual_softmax_under_sdpa():
    model = ViTModel(tiny_vit()).eval()
    model.set_attn_implementation("sdpa")
    x = torch.randn(1, 3, 32, 32)
    out = model(x, output_attentions=True, output_hidden_states=True)
    block = model.encoder.blocks[0]
    h = block.norm1(out.hidden_states[0])
    qkv = block.attn.qkv(h).view(1, 17, 3, 4, 8).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    manual = (q @ k.transpose(-2, -1) / 8**0.5).softmax(-1)
    torch.testing.assert_close(out.attentions[0], manual, atol=1e-6, rtol=1e-5)


def test_presets_parameter_counts_and_unknown_name():
    for name in ("vit-base-patch16-224", "vit-large-patch16-224", "vit-huge-patch14-224"):
        preset = hf_vision.PRESETS[name]
        with torch.device("meta"):
            model = ViTForImageClassification(hf_vision.get_config(name))
        count = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(count - preset.params_m) / preset.params_m < 0.005, (name, count)
    with pytest.raises(ValueError) as err:
        hf_vision.get_config("vit-gigantic")
    assert "vit-base-patch16-224" in str(err.value) and "vit-huge-patch14-224" in str(err.value)
    assert hf_vision.get_config("vit-base-patch16-224", num_labels=10).num_labels == 10
