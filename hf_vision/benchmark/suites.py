"""The contenders of each benchmark suite (ours first, then timm's and transformers' equivalents) and the step
kinds that say how each is called and how its loss is taken. A new suite is one `@register_suite` function."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_vision.modeling.config_checks import pair

from ..presets import get_config


# ----------------------------------------------------------------------------------------------- step kinds
@dataclass(frozen=True)
class StepKind:
    """How to call a contender: `infer(model, batch)` returns any tensor, `loss(model, batch)` a scalar."""

    infer: Callable[[nn.Module, dict[str, torch.Tensor]], Any]
    loss: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def _features(out: Any) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out


STEP_KINDS: dict[str, StepKind] = {
    # Hugging Face classifiers compute their own loss when given labels, as users call them.
    "hf_classify": StepKind(
        infer=lambda m, b: m(pixel_values=b["pixel_values"]).logits,
        loss=lambda m, b: m(pixel_values=b["pixel_values"], labels=b["labels"]).loss,
    ),
    "timm_classify": StepKind(
        infer=lambda m, b: m(b["pixel_values"]),
        loss=lambda m, b: F.cross_entropy(m(b["pixel_values"]), b["labels"]),
    ),
    # Backbones: the loss is the mean of the last hidden state (enough to exercise the whole backward).
    "hf_features": StepKind(
        infer=lambda m, b: _features(m(pixel_values=b["pixel_values"])),
        loss=lambda m, b: _features(m(pixel_values=b["pixel_values"])).float().mean(),
    ),
    "timm_features": StepKind(
        infer=lambda m, b: m.forward_features(b["pixel_values"]),
        loss=lambda m, b: m.forward_features(b["pixel_values"]).float().mean(),
    ),
    # Masked autoencoders: the same `noise` for every contender, so all of them mask the same patches.
    "hf_mae": StepKind(
        infer=lambda m, b: m(pixel_values=b["pixel_values"], noise=b["noise"]).loss,
        loss=lambda m, b: m(pixel_values=b["pixel_values"], noise=b["noise"]).loss,
    ),
}


# ----------------------------------------------------------------------------------------------- suites
@dataclass
class Contender:
    model: nn.Module
    kind: str  # a key of STEP_KINDS


@dataclass(frozen=True)
class Unavailable:
    reason: str


SuiteBuilder = Callable[[dict[str, Any], set[str]], "dict[str, Contender | Unavailable]"]
SUITES: dict[str, SuiteBuilder] = {}


def register_suite(name: str) -> Callable[[SuiteBuilder], SuiteBuilder]:
    """Decorator: `build(config_overrides, references) -> {"ours": Contender, "<reference>": ..., ...}`."""

    def add(builder: SuiteBuilder) -> SuiteBuilder:
        SUITES[name] = builder
        return builder

    return add


def _ours(preset: str, model_class: type[nn.Module], config_overrides: dict[str, Any], *, kind: str = "hf_classify"):
    """A suite's config (the preset with the overrides) and its contenders so far: our model, first, as "ours"."""
    config = get_config(preset, **config_overrides)
    contenders: dict[str, Contender | Unavailable] = {"ours": Contender(model_class(config), kind)}
    return config, contenders


def _vit_kwargs(config) -> dict[str, Any]:
    """Our ViT config as timm VisionTransformer keyword arguments."""
    if config.hidden_act not in ("gelu", "gelu_python"):
        raise ValueError(f"hidden_act={config.hidden_act!r}: the timm reference only exists for 'gelu'")
    return dict(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.num_channels,
        embed_dim=config.hidden_size, depth=config.num_hidden_layers, num_heads=config.num_attention_heads,
        mlp_ratio=config.intermediate_size / config.hidden_size, qkv_bias=config.qkv_bias,
        num_classes=config.num_labels, global_pool="token" if config.pooling == "cls" else "avg",
        class_token=config.class_token, fc_norm=config.use_fc_norm,
    )


def _transformers_vit_config(config, **extra):
    """Our ViT config as transformers' ViTConfig (same widths, eps, dropout-free, sdpa)."""
    from transformers import ViTConfig as HFViTConfig

    size = pair(config.image_size)[0]
    return HFViTConfig(
        image_size=size, patch_size=config.patch_size, num_channels=config.num_channels,
        hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act, layer_norm_eps=config.layer_norm_eps, qkv_bias=config.qkv_bias,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=config.num_labels,
        **extra,
    )


@register_suite("vit-base-patch16-224")
def _vit_b16_suite(config_overrides: dict[str, Any], references: set[str]):
    from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification

    config, contenders = _ours("vit-base-patch16-224", ViTForImageClassification, config_overrides)
    if "timm" in references:
        import timm

        contenders["timm"] = Contender(
            timm.create_model("vit_base_patch16_224", pretrained=False, **_vit_kwargs(config)), "timm_classify"
        )
    if "transformers" in references:
        if config.pooling != "cls" or not config.class_token:
            contenders["transformers"] = Unavailable("transformers' ViT only pools the class token")
        else:
            from transformers import ViTForImageClassification as HFViT

            hf_config = _transformers_vit_config(config)
            hf_config._attn_implementation = "sdpa"
            contenders["transformers"] = Contender(HFViT(hf_config), "hf_classify")
    return contenders


class BitViTForImageClassification(nn.Module):
    """transformers' stand-in for the removed ViTHybrid: BitBackbone (ResNet-50 stages 3-4-9, weight
    standardisation, GroupNorm, 'SAME' padding) feeding ViTForImageClassification with 1x1 patches over its
    stride-16 feature map; this is how ViTHybrid itself was assembled."""

    def __init__(self, config) -> None:
        super().__init__()
        from transformers import BitBackbone, BitConfig
        from transformers import ViTForImageClassification as HFViT

        size = pair(config.image_size)[0]
        bit = BitConfig(
            num_channels=config.num_channels, layer_type="bottleneck", global_padding="SAME",
            embedding_dynamic_padding=True, depths=list(config.backbone_layers),
            embedding_size=config.backbone_width, num_groups=config.backbone_norm_groups,
            hidden_sizes=[4 * config.backbone_width * 2**i for i in range(len(config.backbone_layers))],
            out_features=[f"stage{len(config.backbone_layers)}"],
        )
        self.backbone = BitBackbone(bit)
        vit_config = _transformers_vit_config(config)
        vit_config.image_size = size // config.backbone_stride
        vit_config.num_channels = config.backbone_channels
        vit_config._attn_implementation = "sdpa"
        self.vit = HFViT(vit_config)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None):
        features = self.backbone(pixel_values).feature_maps[-1]
        return self.vit(pixel_values=features, labels=labels)


@register_suite("vit-base-r50-s16-224")
def _hybrid_suite(config_overrides: dict[str, Any], references: set[str]):
    from hf_vision.modeling.hybrid.modeling_hybrid import HybridForImageClassification

    config, contenders = _ours("vit-base-r50-s16-224", HybridForImageClassification, config_overrides)
    if "timm" in references:
        import timm

        kwargs = _vit_kwargs(config)
        if tuple(config.backbone_layers) != (3, 4, 9) or config.backbone_width != 64:
            contenders["timm"] = Unavailable("timm's vit_base_r50_s16_224 has a fixed R50 (3, 4, 9), width 64")
        else:
            contenders["timm"] = Contender(
                timm.create_model("vit_base_r50_s16_224", pretrained=False, **kwargs), "timm_classify"
            )
    if "transformers" in references:
        contenders["transformers"] = Contender(BitViTForImageClassification(config), "hf_classify")
    return contenders


@register_suite("swin-tiny-patch4-window7-224")
def _swin_t_suite(config_overrides: dict[str, Any], references: set[str]):
    """Swin-T classifiers with the same config (drop-path rate included) in all three libraries."""
    from hf_vision.modeling.swin.modeling_swin import SwinForImageClassification

    config, contenders = _ours("swin-tiny-patch4-window7-224", SwinForImageClassification, config_overrides)
    size = pair(config.image_size)
    if "timm" in references:
        import timm

        contenders["timm"] = Contender(timm.create_model(
            "swin_tiny_patch4_window7_224", pretrained=False, img_size=size, patch_size=config.patch_size,
            in_chans=config.num_channels, embed_dim=config.embed_dim, depths=tuple(config.depths),
            num_heads=tuple(config.num_heads), window_size=config.window_size, mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias, drop_path_rate=config.drop_path_rate, num_classes=config.num_labels,
        ), "timm_classify")
    if "transformers" in references:
        from transformers import SwinConfig as HFSwinConfig
        from transformers import SwinForImageClassification as HFSwin

        hf_config = HFSwinConfig(
            image_size=size, patch_size=config.patch_size, num_channels=config.num_channels,
            embed_dim=config.embed_dim, depths=list(config.depths), num_heads=list(config.num_heads),
            window_size=config.window_size, mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias,
            drop_path_rate=config.drop_path_rate, layer_norm_eps=config.layer_norm_eps,
            use_absolute_embeddings=config.use_absolute_position_embeddings, num_labels=config.num_labels,
        )
        hf_config._attn_implementation = "sdpa"
        contenders["transformers"] = Contender(HFSwin(hf_config), "hf_classify")
    return contenders


@register_suite("mae-vit-base-patch16")
def _mae_b16_suite(config_overrides: dict[str, Any], references: set[str]):
    """MAE pre-training step (75% masking, same noise for all) against transformers' ViTMAEForPreTraining, plus
    our full ViT classifier with the same encoder ("ours ViT": its ratio is ViT step time / MAE step time)."""
    from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining
    from hf_vision.modeling.vit.configuration_vit import ViTConfig
    from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification

    config, contenders = _ours("mae-vit-base-patch16", MAEForPreTraining, config_overrides, kind="hf_mae")
    if "timm" in references:
        contenders["timm"] = Unavailable("timm has no MAE pre-training model (encoder only)")
    if "transformers" in references:
        if config.mask_strategy != "random" or config.encoder_mask_tokens:
            contenders["transformers"] = Unavailable("transformers' ViTMAE only masks at random, encoder w/o [M]")
        else:
            from transformers import ViTMAEConfig, ViTMAEForPreTraining

            size = pair(config.image_size)[0]
            hf_config = ViTMAEConfig(
                image_size=size, patch_size=config.patch_size, num_channels=config.num_channels,
                hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
                num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
                hidden_act=config.hidden_act, layer_norm_eps=config.layer_norm_eps, qkv_bias=config.qkv_bias,
                decoder_hidden_size=config.decoder_hidden_size,
                decoder_num_hidden_layers=config.decoder_num_hidden_layers,
                decoder_num_attention_heads=config.decoder_num_attention_heads,
                decoder_intermediate_size=config.decoder_intermediate_size, mask_ratio=config.mask_ratio,
                norm_pix_loss=config.norm_pix_loss,
            )
            hf_config._attn_implementation = "sdpa"
            contenders["transformers"] = Contender(ViTMAEForPreTraining(hf_config), "hf_mae")
    encoder = {k: getattr(config, k) for k in (
        "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "hidden_act", "layer_norm_eps", "qkv_bias")}
    contenders["ours ViT"] = Contender(ViTForImageClassification(ViTConfig(**encoder, num_labels=1000)),
                                       "hf_classify")
    return contenders
