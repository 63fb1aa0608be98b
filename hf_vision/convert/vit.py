"""ViT and R50+ViT checkpoints from timm, transformers and Google's released `.npz` files, into our models, and
the way back: `to_timm` (ViT and hybrid) and `to_transformers` (ViT) through the same key maps read backwards.

Every converter builds the matching config, renames (and for Google, transposes) each tensor, and loads the
result strictly: a source tensor we do not know how to place, or a parameter of ours left unfilled, raises a
ValueError instead of silently producing a different model. `hf_vision.convert` lists these converters in its
registries (TIMM_CONVERTERS, TRANSFORMERS_CONVERTERS, TO_TIMM, TO_TRANSFORMERS); Google's `.npz` reader, built on
`build_and_load`, is convert/vit_npz.py (OFFICIAL_LOADERS).
"""
from __future__ import annotations

import logging
import re
from functools import partial
from typing import Any

import torch
from torch import nn

from hf_vision.modeling.config_checks import pair
from hf_vision.modeling.hybrid.configuration_hybrid import HybridConfig
from hf_vision.modeling.hybrid.modeling_hybrid import HybridForImageClassification, HybridModel
from hf_vision.modeling.vit.configuration_vit import ViTConfig
from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification, ViTModel

from . import KeySource, assemble, fill_strictly, load_strictly, rebase, timm_pretrained_cfg
from .hybrid import timm_backbone, timm_backbone_config, timm_backbone_key, timm_std_conv_weight

logger = logging.getLogger(__name__)

POS = "embeddings.position_embeddings"


def build_and_load(config: ViTConfig, base: dict[str, torch.Tensor], head: dict[str, torch.Tensor] | None,
                   source: str) -> nn.Module:
    """Our (classification) model for `config`, loaded strictly (`load_strictly`) from base-model and classifier
    tensors read from `source` (named in the error)."""
    hybrid = isinstance(config, HybridConfig)
    if head is None:
        model = (HybridModel if hybrid else ViTModel)(config)
        state = dict(base)
    else:
        model = (HybridForImageClassification if hybrid else ViTForImageClassification)(config)
        state = {f"vit.{k}": v for k, v in base.items()}
        state.update(head)
    return load_strictly(model, state, source)


def _size(value) -> int | list[int]:
    """timm/transformers sizes (int or pair) -> our config value (int when square)."""
    if isinstance(value, int):
        return value
    h, w = value
    return h if h == w else [h, w]


# ---------------------------------------------------------------- timm
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")


def _is_timm_vit(model: nn.Module) -> bool:
    return type(model).__name__ == "VisionTransformer" and type(model).__module__.startswith("timm.")


def _timm_act(act: nn.Module) -> str:
    if isinstance(act, nn.GELU):
        return "gelu" if act.approximate == "none" else "gelu_pytorch_tanh"
    if type(act).__name__ == "GELUTanh" and type(act).__module__.startswith("timm."):  # act_layer="gelu_tanh"
        return "gelu_pytorch_tanh"
    raise ValueError(f"timm ViT: MLP activation {type(act).__name__} is not supported (GELU only)")


def _dropout(module) -> float:
    return module.p if isinstance(module, nn.Dropout) else float(module or 0.0)


def timm_vit_config(model: nn.Module) -> ViTConfig:
    """Our config for a timm `VisionTransformer` (plain or hybrid); ValueError for features we lack."""
    if model.global_pool not in ("token", "avg"):
        raise ValueError(f"timm ViT: global_pool={model.global_pool!r} is not supported; accepted: 'token', 'avg'")
    unsupported = {
        "register tokens": getattr(model, "num_reg_tokens", 0),
        "no_embed_class": getattr(model, "no_embed_class", False),
        "pool_include_prefix": getattr(model, "pool_include_prefix", False),
        "pre_norm": not isinstance(getattr(model, "norm_pre", nn.Identity()), nn.Identity),
        "final_norm=False": isinstance(model.norm, nn.Identity) and isinstance(model.fc_norm, nn.Identity),
        "dynamic_img_pad": getattr(model.patch_embed, "dynamic_img_pad", False),
    }
    found = [name for name, present in unsupported.items() if present]
    if found:
        raise ValueError(f"timm ViT: {', '.join(found)} not supported by our ViT")
    block = model.blocks[0]
    patch = model.patch_embed.patch_size
    if patch[0] != patch[1]:
        raise ValueError(f"timm ViT: non-square patch_size={patch} is not supported")
    kwargs: dict[str, Any] = dict(
        image_size=_size(tuple(model.patch_embed.img_size)),
        patch_size=patch[0],
        num_channels=model.patch_embed.proj.in_channels if not hasattr(model.patch_embed, "backbone")
        else model.in_chans,
        hidden_size=model.embed_dim,
        num_hidden_layers=len(model.blocks),
        num_attention_heads=block.attn.num_heads,
        intermediate_size=block.mlp.fc1.out_features,
        hidden_act=_timm_act(block.mlp.act),
        layer_norm_eps=block.norm1.eps,
        qkv_bias=block.attn.qkv.bias is not None,
        pooling="cls" if model.global_pool == "token" else "gap",
        class_token=model.cls_token is not None,
        fc_norm=not isinstance(model.fc_norm, nn.Identity),
        position_embedding_type="learned" if model.pos_embed is not None else "none",
        num_labels=model.num_classes,
        # regularisation, so fine-tuning the converted model behaves like the source (timm's stochastic depth
        # also grows linearly to its last block)
        hidden_dropout_prob=_dropout(getattr(block.attn, "proj_drop", None)),
        attention_probs_dropout_prob=_dropout(getattr(block.attn, "attn_drop", None)),
        drop_path_rate=getattr(getattr(model.blocks[-1], "drop_path1", None), "drop_prob", 0.0),
    )
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "mean" in cfg and "std" in cfg:
        kwargs.update(image_mean=list(cfg["mean"]), image_std=list(cfg["std"]))
    if hasattr(model.patch_embed, "backbone"):
        return HybridConfig(**kwargs, **timm_backbone_config(model.patch_embed.backbone))
    return ViTConfig(**kwargs)


def timm_vit_key(key: str, *, stem_only: bool = False) -> str | None:
    """timm VisionTransformer state-dict key -> our base-model key (None: not ours to place)."""
    if key == "cls_token":
        return "embeddings.cls_token"
    if key == "pos_embed":
        return POS
    if key in ("patch_embed.proj.weight", "patch_embed.proj.bias"):
        return "embeddings." + key
    if key.startswith("patch_embed.backbone."):
        return timm_backbone_key(key, stem_only=stem_only)
    match = _TIMM_BLOCK.match(key)
    if match:
        return f"encoder.blocks.{match[1]}.{match[2]}.{match[3]}"
    if key in ("norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias"):
        return key
    return None


def convert_timm_vit(model: nn.Module) -> nn.Module:
    """timm `vit_*` / `vit_*_r50_*` -> our ViT/Hybrid (ForImageClassification when it has a head)."""
    config = timm_vit_config(model)
    stem_only = hasattr(model.patch_embed, "backbone") and not hasattr(model.patch_embed.backbone, "stem")
    base, head, unplaced = {}, {}, []
    for key, value in model.state_dict().items():
        if key.startswith("head."):
            head["classifier." + key[len("head."):]] = value
            continue
        ours = timm_vit_key(key, stem_only=stem_only)
        if ours is None:
            unplaced.append(key)
        else:
            base[ours] = value
    if unplaced:
        raise ValueError(f"timm ViT: tensors with no counterpart in our model (unsupported feature): {unplaced}")
    return build_and_load(config, base, head if config.num_labels > 0 and head else None, type(model).__name__)


# ---------------------------------------------------------------- transformers
_HF_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_HF_RENAME = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def transformers_vit_config(model: nn.Module, *, representation_size: int | None) -> ViTConfig:
    c = model.config
    return ViTConfig(
        image_size=_size(c.image_size), patch_size=c.patch_size if isinstance(c.patch_size, int) else c.patch_size[0],
        num_channels=c.num_channels, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size, hidden_act=c.hidden_act,
        layer_norm_eps=c.layer_norm_eps, qkv_bias=c.qkv_bias, hidden_dropout_prob=c.hidden_dropout_prob,
        attention_probs_dropout_prob=c.attention_probs_dropout_prob, initializer_range=c.initializer_range,
        pooling="cls", class_token=True, fc_norm=False, representation_size=representation_size,
        num_labels=c.num_labels, id2label=dict(c.id2label), label2id=dict(c.label2id), problem_type=c.problem_type,
    )


def transformers_vit_key(key: str) -> KeySource:
    """transformers ViTModel key -> our base-model key (q/k/v: thirds of our fused qkv; None: no counterpart)."""
    kind = key.rpartition(".")[2]
    if key in ("embeddings.cls_token", POS):
        return key
    if key.startswith("embeddings.patch_embeddings.projection."):
        return "embeddings.patch_embed.proj." + kind
    if key.startswith("layernorm."):
        return "norm." + kind
    if key.startswith("pooler.dense."):
        return "pre_logits.fc." + kind
    match = _HF_LAYER.match(key)
    if match is None:
        return None
    index, module = match[1], match[2].rpartition(".")[0]
    if module in ("attention.q_proj", "attention.k_proj", "attention.v_proj"):
        # (3*C, C) / (3*C,) rows ordered q, k, v
        return f"encoder.blocks.{index}.attn.qkv.{kind}", "qkv".index(module[-6]), 3
    if module in _HF_RENAME:
        return f"encoder.blocks.{index}.{_HF_RENAME[module]}.{kind}"
    return None


def transformers_vit_state_dict(base: nn.Module) -> dict[str, torch.Tensor]:
    """transformers ViTModel state dict -> ours; q/k/v projections are fused into one qkv Linear."""
    # mask_token is only used for masked image modeling (bool_masked_pos), which our ViT does not take
    src = {k: v for k, v in base.state_dict().items() if k != "embeddings.mask_token"}
    out, unplaced = assemble(src, transformers_vit_key)
    if unplaced:
        raise ValueError(f"transformers ViT: tensors with no counterpart in our model: {unplaced}")
    return out


def convert_transformers_vit(model: nn.Module) -> nn.Module:
    """transformers `ViTModel` (pooler -> our pre-logits) or `ViTForImageClassification` -> ours."""
    from transformers import ViTForImageClassification as HFViTForImageClassification
    from transformers import ViTModel as HFViTModel

    if isinstance(model, HFViTForImageClassification):
        base, head_module = model.vit, model.classifier
    elif isinstance(model, HFViTModel):
        base, head_module = model, None
    else:
        raise ValueError(f"transformers ViT: {type(model).__name__} is not supported; "
                         "accepted: ViTModel, ViTForImageClassification")
    pooler = base.pooler
    if pooler is not None and model.config.pooler_act != "tanh":
        raise ValueError(f"transformers ViT: pooler_act={model.config.pooler_act!r}; only 'tanh' maps to pre-logits")
    config = transformers_vit_config(model, representation_size=pooler.dense.out_features if pooler else None)
    head = None
    if head_module is not None:
        if not isinstance(head_module, nn.Linear):  # num_labels=0: Identity classifier
            config.num_labels = 0
        head = {f"classifier.{k}": v for k, v in head_module.state_dict().items()}
    return build_and_load(config, transformers_vit_state_dict(base), head, type(model).__name__)


# ---------------------------------------------------------------- the way back
def _refuse(library: str, reasons: dict[str, bool]) -> None:
    found = [reason for reason, present in reasons.items() if present]
    if found:
        raise ValueError(f"{library} cannot express this model: {'; '.join(found)}")


def _timm_image_size(config: ViTConfig) -> int | tuple[int, int]:
    height, width = pair(config.image_size)
    return height if height == width else (height, width)


def timm_vit_args(config: ViTConfig, *, num_classes: int) -> tuple[str, dict[str, Any]]:
    """(timm architecture, create_model kwargs) for our ViT / hybrid config; ValueError naming the field."""
    hybrid = isinstance(config, HybridConfig)
    _refuse("timm's VisionTransformer", {
        f"representation_size={config.representation_size} (timm removed the pre-logits layer)":
            config.representation_size is not None,
        f"classifier_norm={config.classifier_norm!r} (accepted: 'none')": config.classifier_norm != "none",
        f"pooling='cls' with class_token=False": config.pooling == "cls" and not config.class_token,
        f"intermediate_size={config.intermediate_size} is not a whole multiple of hidden_size={config.hidden_size}"
        " (timm builds the MLP from mlp_ratio)": config.intermediate_size % config.hidden_size != 0,
        f"hidden_act={config.hidden_act!r} (accepted: 'gelu', 'gelu_pytorch_tanh')":
            config.hidden_act not in ("gelu", "gelu_pytorch_tanh"),
    })
    args: dict[str, Any] = dict(
        img_size=_timm_image_size(config), patch_size=config.patch_size, in_chans=config.num_channels,
        num_classes=num_classes, global_pool="token" if config.pooling == "cls" else "avg",
        embed_dim=config.hidden_size, depth=config.num_hidden_layers, num_heads=config.num_attention_heads,
        mlp_ratio=config.intermediate_size // config.hidden_size, qkv_bias=config.qkv_bias,
        class_token=config.class_token, fc_norm=config.use_fc_norm,
        # a fixed sin-cos table becomes timm's learned table holding the same values
        pos_embed="none" if config.position_embedding_type == "none" else "learn",
        proj_drop_rate=config.hidden_dropout_prob, attn_drop_rate=config.attention_probs_dropout_prob,
        drop_path_rate=config.drop_path_rate,
    )
    if config.hidden_act == "gelu_pytorch_tanh":
        args["act_layer"] = "gelu_tanh"
    if config.layer_norm_eps != 1e-6:  # timm's ViT default; another eps is not serialisable into timm's config
        args["norm_layer"] = partial(nn.LayerNorm, eps=config.layer_norm_eps)
    if not hybrid:
        return "vit_base_patch16_224", args
    registered = timm_registered_hybrid(config)
    if registered is not None:
        return registered, args
    from timm.layers import HybridEmbed

    return "vit_base_patch16_224", {**args, "embed_layer": partial(HybridEmbed, backbone=timm_backbone(config))}


# timm's registered hybrids: trunk stages -> architecture (trunk width 64, GroupNorm(32, eps 1e-5), timm's
# standardisation with eps 1e-8); any other trunk is built directly and cannot be named in timm's config
_TIMM_HYBRIDS = {(): "vit_tiny_r_s16_p8_224", (3, 4, 9): "vit_base_r50_s16_224", (2, 2, 2, 2): "vit_small_r26_s32_224"}


def timm_registered_hybrid(config: HybridConfig) -> str | None:
    same_trunk = (config.backbone_width, config.backbone_norm_groups, config.backbone_norm_eps,
                  config.backbone_std_style, config.backbone_std_eps) == (64, 32, 1e-5, "timm", 1e-8)
    return _TIMM_HYBRIDS.get(tuple(config.backbone_layers)) if same_trunk else None


def to_timm_vit(model: nn.Module) -> nn.Module:
    """timm `VisionTransformer` (hybrids: with a `HybridEmbed` ResNetV2 trunk) holding our weights; the image
    mean/std travel in its `pretrained_cfg`. A headless model (ViTModel) gives num_classes=0, whose output is our
    pooler_output. Google-style trunk standardisation is folded into the exported kernels (exact: see hybrid.py)."""
    import timm

    classifier = isinstance(model, ViTForImageClassification)
    config = model.config
    arch, args = timm_vit_args(config, num_classes=config.num_labels if classifier else 0)
    target = timm.create_model(arch, pretrained=False, **args)
    timm_pretrained_cfg(target, config)
    prefix = "vit." if classifier else ""
    hybrid = isinstance(config, HybridConfig)
    stem_only = hybrid and not config.backbone_layers

    def source_of(key: str) -> KeySource:
        if key.startswith("head."):
            return "classifier." + key[len("head."):]
        return rebase(timm_vit_key(key, stem_only=stem_only), "", prefix)

    def adapt(key: str, tensor: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
        if hybrid and key.startswith("patch_embed.backbone.") and tensor.dim() == 4:  # a standardised conv kernel
            conv = model.get_submodule(source_of(key).rpartition(".")[0])
            return timm_std_conv_weight(conv, eps=1e-8 if config.backbone_std_style == "google"
                                        else config.backbone_std_eps)
        return tensor

    return fill_strictly(target, model, source_of, adapt=adapt)


def transformers_vit_config_for(config: ViTConfig, *, classifier: bool):
    """transformers' ViTConfig for ours; ValueError naming the field transformers' ViT cannot express."""
    from transformers import ViTConfig as HFViTConfig

    _refuse("transformers' ViT", {
        "a ResNet trunk (transformers 5 has no ViT hybrid; use to_timm)": isinstance(config, HybridConfig),
        f"pooling={config.pooling!r} (accepted: 'cls')": config.pooling != "cls",
        "class_token=False": not config.class_token,
        f"fc_norm={config.fc_norm!r} (transformers normalises every token, not the pooled one)": config.use_fc_norm,
        f"position_embedding_type={config.position_embedding_type!r} (accepted: 'learned')":
            config.position_embedding_type != "learned",
        f"classifier_norm={config.classifier_norm!r} (accepted: 'none')": config.classifier_norm != "none",
        f"representation_size={config.representation_size} (ViTForImageClassification reads the class token, "
        "not its pooler)": classifier and config.representation_size is not None,
    })
    if config.drop_path_rate:
        logger.warning("transformers' ViT has no stochastic depth: drop_path_rate=%s is not carried over",
                       config.drop_path_rate)
    height, width = pair(config.image_size)
    return HFViTConfig(
        image_size=height if height == width else [height, width], patch_size=config.patch_size,
        num_channels=config.num_channels, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act, hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob, initializer_range=config.initializer_range,
        layer_norm_eps=config.layer_norm_eps, qkv_bias=config.qkv_bias,
        pooler_output_size=config.representation_size or config.hidden_size, pooler_act="tanh",
        num_labels=config.num_labels, id2label=dict(config.id2label), label2id=dict(config.label2id),
        problem_type=config.problem_type,
    )


def to_transformers_vit(model: nn.Module) -> nn.Module:
    """transformers `ViTForImageClassification` (from ours) or `ViTModel` (pre-logits -> its tanh pooler; without
    pre-logits, no pooler: our pooler_output is its last_hidden_state[:, 0])."""
    from transformers import ViTForImageClassification as HFViTForImageClassification
    from transformers import ViTModel as HFViTModel

    classifier = isinstance(model, ViTForImageClassification)
    hf_config = transformers_vit_config_for(model.config, classifier=classifier)
    if classifier:
        target = HFViTForImageClassification(hf_config)
    else:
        target = HFViTModel(hf_config, add_pooling_layer=model.config.representation_size is not None)

    def source_of(key: str) -> KeySource:
        if classifier:
            if key.startswith("classifier."):
                return key
            if not key.startswith("vit."):
                return None
            key = key[len("vit."):]
        return rebase(transformers_vit_key(key), "", "vit." if classifier else "")

    return fill_strictly(target, model, source_of)


