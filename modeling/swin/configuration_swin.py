"""Swin Transformer configuration (Liu et al. 2021), with the paper's ablation switches as fields."""
from __future__ import annotations

from transformers import PretrainedConfig
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneConfigMixin

from ..config_checks import (IMAGENET_MEAN, IMAGENET_STD, check_common, check_positive, check_probability,
                             check_saved_labels, pair)


class SwinConfig(BackboneConfigMixin, PretrainedConfig):
    """Defaults are Swin-T at 224 (window 7).

    use_absolute_position_embeddings: the paper's "ape" (a learned table added after the patch embedding).
    shifted_windows / use_relative_position_bias: the paper's Table 4 ablations (W-MSA only; no bias).
    patch_norm: LayerNorm after the patch embedding (on in every released model).
    out_features / out_indices: which of "stem", "stage1".."stageN" `SwinBackbone` returns (transformers'
    backbone conventions; default: the last stage).
    """

    model_type = "hfv_swin"
    ARCHITECTURES = ("SwinModel", "SwinForImageClassification", "SwinBackbone")  # accepted `architectures` entries

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """A saved config (config.json, also through AutoConfig) is checked before the caller's overrides apply."""
        config_dict = check_saved_labels(config_dict, overrides=kwargs)
        return super().from_dict(config_dict, **kwargs)
    attribute_map = {"num_attention_heads": "num_heads", "num_hidden_layers": "num_layers"}

    def __init__(
        self,
        image_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        num_channels: int = 3,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        drop_path_rate: float = 0.1,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        use_absolute_position_embeddings: bool = False,
        shifted_windows: bool = True,
        use_relative_position_bias: bool = True,
        patch_norm: bool = True,
        out_features: list[str] | None = None,
        out_indices: list[int] | None = None,
        image_mean: tuple[float, ...] = IMAGENET_MEAN,
        image_std: tuple[float, ...] = IMAGENET_STD,
        **kwargs,
    ) -> None:
        self.image_size = list(image_size) if isinstance(image_size, (tuple, list)) else image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.embed_dim = embed_dim
        # a single int is kept as given, so validation names the field instead of failing in list()
        self.depths = list(depths) if isinstance(depths, (list, tuple)) else depths
        self.num_heads = list(num_heads) if isinstance(num_heads, (list, tuple)) else num_heads
        self.window_size = window_size
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.drop_path_rate = drop_path_rate
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.use_absolute_position_embeddings = use_absolute_position_embeddings
        self.shifted_windows = shifted_windows
        self.use_relative_position_bias = use_relative_position_bias
        self.patch_norm = patch_norm
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        check_saved_labels(kwargs)  # transformers would replace a disagreeing id2label with LABEL_i names
        super().__init__(**kwargs)
        self.validate_swin()
        self.num_layers = len(self.depths)
        # channels after the last stage: what heads (and VisionEncoderDecoder) read as hidden_size
        self.hidden_size = embed_dim * 2 ** (len(self.depths) - 1)
        self.stage_names = ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]
        self.set_output_features_output_indices(
            out_features=list(out_features) if out_features is not None else None,
            out_indices=list(out_indices) if out_indices is not None else None,
        )

    @property
    def stage_channels(self) -> list[int]:
        """Channels of "stem", "stage1".. "stageN" (the stem has embed_dim, like stage 1)."""
        return [self.embed_dim] + [self.embed_dim * 2**i for i in range(len(self.depths))]

    def validate_swin(self) -> None:
        check_common(self, self.ARCHITECTURES)
        check_positive(patch_size=self.patch_size, num_channels=self.num_channels, embed_dim=self.embed_dim,
                       window_size=self.window_size, mlp_ratio=self.mlp_ratio, layer_norm_eps=self.layer_norm_eps)
        check_probability(hidden_dropout_prob=self.hidden_dropout_prob,
                          attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                          drop_path_rate=self.drop_path_rate)
        for field in ("patch_size", "window_size", "embed_dim"):
            if not isinstance(getattr(self, field), int):
                raise ValueError(f"{field}={getattr(self, field)!r} must be an int")
        height, width = pair(self.image_size)
        check_positive(image_size=min(height, width))
        if (not isinstance(self.depths, (list, tuple)) or not self.depths
                or any(not isinstance(d, int) or d <= 0 for d in self.depths)):
            raise ValueError(f"depths={self.depths!r} must be a non-empty list of positive ints (blocks per stage)")
        if not isinstance(self.num_heads, (list, tuple)) or len(self.num_heads) != len(self.depths):
            raise ValueError(
                f"num_heads={self.num_heads!r} must have one entry per stage (len(depths)={len(self.depths)})"
            )
        for i, heads in enumerate(self.num_heads):
            dim = self.embed_dim * 2**i
            if not isinstance(heads, int) or heads <= 0 or dim % heads:
                raise ValueError(f"num_heads[{i}]={heads!r} must be a positive int dividing the stage width {dim} "
                                 f"(embed_dim={self.embed_dim} * 2**{i})")
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; accepted values: "
                             f"{', '.join(sorted(ACT2FN))}")
        if len(self.image_mean) != self.num_channels or len(self.image_std) != self.num_channels:
            raise ValueError(f"image_mean and image_std need num_channels={self.num_channels} values each")
