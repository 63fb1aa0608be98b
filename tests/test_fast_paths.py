"""The speed paths of the shared layers compute exactly what the plain paths compute.

- the classifier's last block runs the class token alone (`pooled_only`): logits and gradients must match a
  full-width forward through the same weights;
- without autograd, residual adds and GELU write into fresh branch tensors: nothing the caller can see (input,
  returned hidden states) may change, and results must equal those computed with autograd on;
- `Attention(num_queries=k)` equals the first k rows of the full attention, with and without a bias.
"""
from __future__ import annotations

import pytest
import torch

from hf_vision.modeling.layers.attention import Attention
from hf_vision.modeling.layers.block import Block

from .cases import tiny_hybrid, tiny_vit
import hf_vision


def _full_logits(model, pixel_values):
    """The classifier head applied to a full-width ViTModel forward (no shortcut anywhere)."""
    out = model.vit(pixel_values, pooled_only=False)
    assert out.last_hidden_state.shape[1] > 1
    return model.classifier(model.head_norm(out.pooler_output))


@pytest.mark.parametrize("make_config,cls", [(tiny_vit, hf_vision.ViTForImageClassification),
                                             (tiny_hybrid, hf_vision.HybridForImageClassification)],
                         ids=["vit", "hybrid"])
def test_classifier_shortcut_matches_full_forward(make_config, cls):
    model = cls(make_config()).eval()
    x = torch.randn(3, 3, 32, 32)
    labels = torch.tensor([0, 1, 2])
    out = model(pixel_values=x, labels=labels)
    full = _full_logits(model, x)
    torch.testing.assert_close(out.logits, full, atol=1e-5, rtol=1e-5)

    model.zero_grad()
    out.loss.backward()
    fast_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.nn.functional.cross_entropy(_full_logits(model, x), labels).backward()
    full_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert fast_grads.keys() == full_grads.keys() and len(full_grads) > 10
    for name in full_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_shortcut_off_when_every_token_is_promised():
    model = hf_vision.ViTForImageClassification(tiny_vit()).eval()
    x = torch.randn(2, 3, 32, 32)
    out = model(pixel_values=x, output_hidden_states=True, output_attentions=True)
    tokens = 1 + (32 // 8) ** 2
    assert out.hidden_states[-1].shape[1] == tokens and out.attentions[-1].shape[-2:] == (tokens, tokens)
    torch.testing.assert_close(out.logits, _full_logits(model, x), atol=1e-5, rtol=1e-5)
    # ViTModel keeps returning every token unless the caller opts in
    assert model.vit(x).last_hidden_state.shape[1] == tokens
    assert model.vit(x, pooled_only=True).last_hidden_state.shape[1] == 1


def test_gap_pooling_is_untouched_by_the_shortcut():
    model = hf_vision.ViTForImageClassification(tiny_vit(pooling="gap")).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.vit(x, pooled_only=True).last_hidden_state.shape[1] == 1 + 16
    torch.testing.assert_close(model(pixel_values=x).logits, _full_logits(model, x))


@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_in_place_inference_leaves_visible_tensors_alone(no_grad):
    """optimize_for_cpu's in-place residual adds (no autograd) never write into the input or a returned state."""
    model = hf_vision.optimize_for_cpu(hf_vision.ViTModel(tiny_vit()).eval())
    x = torch.randn(2, 3, 32, 32)
    x_copy = x.clone()
    with torch.enable_grad():
        ref = model(x, output_hidden_states=True)
    with no_grad():
        out = model(x, output_hidden_states=True)
    assert torch.equal(x, x_copy)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state)
    assert len(out.hidden_states) == len(ref.hidden_states) == 3
    for a, b in zip(out.hidden_states, ref.hidden_states):
        torch.testing.assert_close(a, b)  # an in-place add into a returned state would break this


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_num_queries_matches_full_rows(impl, with_bias):
    torch.manual_seed(0)
    attn = Attention(32, 4).eval()
    x = torch.randn(2, 7, 32)
    bias = torch.randn(2, 4, 7, 7) if with_bias else None
    full, _ = attn(x, bias, attn_implementation=impl)
    part, _ = attn(x, bias, attn_implementation=impl, num_queries=2)
    assert part.shape == (2, 2, 32)
    torch.testing.assert_close(part, full[:, :2], atol=1e-6, rtol=1e-5)
    block = Block(32, 4, 64).eval()
    full_b, _ = block(x, attn_implementation=impl)
    part_b, _ = block(x, attn_implementation=impl, num_queries=1)
    torch.testing.assert_close(part_b, full_b[:, :1], atol=1e-6, rtol=1e-5)


def test_sdpa_fast_path_matches_eager_with_bias_and_weights():
    torch.manual_seed(0)
    attn = Attention(32, 4).eval()
    x, bias = torch.randn(3, 9, 32), torch.randn(1, 4, 9, 9)
    eager, _ = attn(x, bias, attn_implementation="eager")
    sdpa, none = attn(x, bias, attn_implementation="sdpa")
    assert none is None
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-5)
    _, weights = attn(x, bias, attn_implementation="sdpa", output_attentions=True)
    assert weights.shape == (3, 4, 9, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 9))


def test_in_place_residual_never_writes_into_its_input():
    """A branch that hands back its input (a pruned MLP, an Identity) must not be added into in place."""
    from hf_vision.optimize.cpu import _in_place_residual

    x = torch.randn(2, 5, 16)
    x_copy = x.clone()
    with torch.no_grad():
        y = _in_place_residual(x, x)
        z = _in_place_residual(x, x[:])  # a view of the same storage
        fresh = torch.randn(2, 5, 16)
        w = _in_place_residual(x, fresh)
    assert torch.equal(x, x_copy)
    torch.testing.assert_close(y, 2 * x_copy)
    torch.testing.assert_close(z, 2 * x_copy)
    assert w.data_ptr() == fresh.data_ptr()  # the fresh branch was reused, no new allocation
    branch = torch.randn(2, 5, 16, requires_grad=True) * 1
    assert _in_place_residual(x, branch).data_ptr() != branch.data_ptr()  # with autograd: out of place
