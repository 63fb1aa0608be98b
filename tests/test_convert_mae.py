"""MAE interop: transformers' ViTMAE (random-weight tiny reference) and the official checkpoint layout."""
from __future__ import annotations

import pytest
import torch
import transformers

import hf_vision
from hf_vision.convert import from_transformers, load_official
from hf_vision.modeling.layers.pos_embed import sincos_2d

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=2,
            decoder_num_attention_heads=2, decoder_intermediate_size=32, layer_norm_eps=1e-6)


def _reference(norm_pix_loss: bool = False, model_cls=transformers.ViTMAEForPreTraining):
    torch.manual_seed(0)
    ref = model_cls(transformers.ViTMAEConfig(**TINY, norm_pix_loss=norm_pix_loss)).eval()
    # transformers 5.24 leaves fresh position tables at zero; give them the (official) sin-cos values so the
    # comparison exercises the position path too.
    with torch.no_grad():
        vit = ref.vit if hasattr(ref, "vit") else ref
        vit.embeddings.position_embeddings.copy_(sincos_2d(32, (4, 4), num_prefix_tokens=1))
        if hasattr(ref, "decoder"):
            ref.decoder.decoder_pos_embed.copy_(sincos_2d(16, (4, 4), num_prefix_tokens=1))
            for p in ref.parameters():  # fresh ViTMAE biases are zero: randomise everything
                p.add_(torch.randn_like(p) * 0.02)
    return ref


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_pretraining_parity_with_transformers(norm_pix_loss):
    ref = _reference(norm_pix_loss)
    ours = from_transformers(ref)
    assert isinstance(ours, hf_vision.MAEForPreTraining)
    gen = torch.Generator().manual_seed(1)
    pixels, noise = torch.randn(3, 3, 32, 32, generator=gen), torch.rand(3, 16, generator=gen)
    with torch.no_grad():
        expected, got = ref(pixels, noise=noise), ours(pixels, noise)
    torch.testing.assert_close(got.mask, expected.mask, atol=0, rtol=0)
    torch.testing.assert_close(got.ids_restore, expected.ids_restore, atol=0, rtol=0)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-4, rtol=1e-4)


def test_encoder_parity_with_transformers():
    ref = _reference(model_cls=transformers.ViTMAEModel)
    ours = from_transformers(ref)
    assert isinstance(ours, hf_vision.MAEModel)
    gen = torch.Generator().manual_seed(2)
    pixels, noise = torch.randn(2, 3, 32, 32, generator=gen), torch.rand(2, 16, generator=gen)
    with torch.no_grad():
        expected, got = ref(pixels, noise=noise), ours(pixels, noise)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.mask, expected.mask, atol=0, rtol=0)


def _official_layout(ref) -> dict[str, torch.Tensor]:
    """Writes transformers' weights under the official facebookresearch/mae names (independent of our loader)."""
    sd = ref.state_dict()
    out = {"cls_token": sd["vit.embeddings.cls_token"], "pos_embed": sd["vit.embeddings.position_embeddings"],
           "patch_embed.proj.weight": sd["vit.embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": sd["vit.embeddings.patch_embeddings.projection.bias"],
           "norm.weight": sd["vit.layernorm.weight"], "norm.bias": sd["vit.layernorm.bias"],
           "mask_token": sd["decoder.mask_token"], "decoder_pos_embed": sd["decoder.decoder_pos_embed"],
           "decoder_embed.weight": sd["decoder.decoder_embed.weight"],
           "decoder_embed.bias": sd["decoder.decoder_embed.bias"],
           "decoder_norm.weight": sd["decoder.decoder_norm.weight"], "decoder_norm.bias": sd["decoder.decoder_norm.bias"],
           "decoder_pred.weight": sd["decoder.decoder_pred.weight"], "decoder_pred.bias": sd["decoder.decoder_pred.bias"]}
    for src, dst, depth in (("vit.layers", "blocks", 2), ("decoder.decoder_layers", "decoder_blocks", 2)):
        for i in range(depth):
            s, d = f"{src}.{i}", f"{dst}.{i}"
            for kind in ("weight", "bias"):
                out[f"{d}.attn.qkv.{kind}"] = torch.cat([sd[f"{s}.attention.{x}_proj.{kind}"] for x in "qkv"])
                out[f"{d}.attn.proj.{kind}"] = sd[f"{s}.attention.o_proj.{kind}"]
                out[f"{d}.norm1.{kind}"] = sd[f"{s}.layernorm_before.{kind}"]
                out[f"{d}.norm2.{kind}"] = sd[f"{s}.layernorm_after.{kind}"]
                out[f"{d}.mlp.fc1.{kind}"] = sd[f"{s}.mlp.fc1.{kind}"]
                out[f"{d}.mlp.fc2.{kind}"] = sd[f"{s}.mlp.fc2.{kind}"]
    return {k: v.clone() for k, v in out.items()}


def test_load_official_checkpoint_wrapped_and_encoder_only(tmp_path):
    ref = _reference(norm_pix_loss=True)
    state = _official_layout(ref)
    tiny = {k: v for k, v in TINY.items() if k != "image_size"}
    path = tmp_path / "mae_visualize_tiny.pth"
    torch.save({"model": state}, path)  # the official files wrap the state dict under "model"
    ours = load_official(path, "mae-vit-base-patch16", image_size=32, **tiny)
    assert isinstance(ours, hf_vision.MAEForPreTraining) and ours.config.norm_pix_loss
    gen = torch.Generator().manual_seed(3)
    pixels, noise = torch.randn(2, 3, 32, 32, generator=gen), torch.rand(2, 16, generator=gen)
    with torch.no_grad():
        expected, got = ref(pixels, noise=noise), ours(pixels, noise)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-4, rtol=1e-4)

    encoder_only = {k: v for k, v in state.items() if not (k.startswith("decoder_") or k == "mask_token")}
    torch.save(encoder_only, tmp_path / "mae_pretrain_tiny.pth")  # unwrapped, as people re-save them
    encoder = load_official(tmp_path / "mae_pretrain_tiny.pth", "mae-vit-base-patch16", image_size=32, **tiny)
    assert isinstance(encoder, hf_vision.MAEModel)
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixels, noise).last_hidden_state,
                                   ref.vit(pixels, noise=noise).last_hidden_state, atol=1e-4, rtol=1e-4)


def test_load_official_rejects_foreign_files_and_code(tmp_path):
    torch.save({"model": {"head.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="head.weight"):
        load_official(tmp_path / "other.pth", "mae-vit-base-patch16")
    # weights_only=True: a pickle that would run code is refused
    torch.save({"model": {"cls_token": torch.zeros(1)}, "evil": object()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights"):
        load_official(tmp_path / "evil.pth", "mae-vit-base-patch16")
