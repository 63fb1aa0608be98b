"""R50+ViT hybrid configuration: a ViT whose patches are cut from a ResNet feature map instead of the image."""
from __future__ import annotations

from ..config_checks import check_choice, check_divisible, check_positive, pair
from ..vit.configuration_vit import ViTConfig

STD_STYLES = ("google", "timm")


class HybridConfig(ViTConfig):
    """Defaults are R50+ViT-B/16 at 224 (Google's layout, numerics and 'SAME' padding).

    backbone_layers: bottlenecks per ResNet stage; each stage after the first halves the resolution, so the
        trunk's stride is 4 * 2**(len - 1) (16 for (3, 4, 9)); `patch_size` then cuts patches from its feature
        map (1 for R50+ViT-B/16), giving one token per `grid_stride = backbone stride * patch_size` pixels.
    backbone_width: stem width and first-stage bottleneck width (stage i: width * 2**i, output 4x that).
    backbone_norm_groups / backbone_norm_eps: GroupNorm groups and epsilon (Flax's default 1e-6; timm uses 1e-5).
    backbone_std_style / backbone_std_eps: weight standardisation (w - mean) / (std + eps) ("google", 1e-5) or
        (w - mean) / sqrt(var + eps) ("timm", 1e-8); converted checkpoints keep their source's formula.
    """

    model_type = "hfv_hybrid"
    ARCHITECTURES = ("HybridModel", "HybridForImageClassification")

    def __init__(
        self,
        image_size: int | tuple[int, int] = 224,
        patch_size: int = 1,
        backbone_layers: tuple[int, ...] | list[int] = (3, 4, 9),
        backbone_width: int = 64,
        backbone_norm_groups: int = 32,
        backbone_norm_eps: float = 1e-6,
        backbone_std_style: str = "google",
        backbone_std_eps: float = 1e-5,
        **kwargs,
    ) -> None:
        # set before ViTConfig.__init__, whose validation reads grid_stride
        self.backbone_layers = list(backbone_layers)
        self.backbone_width = backbone_width
        self.backbone_norm_groups = backbone_norm_groups
        self.backbone_norm_eps = backbone_norm_eps
        self.backbone_std_style = backbone_std_style
        self.backbone_std_eps = backbone_std_eps
        self.validate_backbone(image_size, patch_size)
        super().__init__(image_size=image_size, patch_size=patch_size, **kwargs)

    @property
    def backbone_stride(self) -> int:
        """Pixels per position of the ResNet feature map."""
        return 4 * 2 ** max(len(self.backbone_layers) - 1, 0)

    @property
    def backbone_channels(self) -> int:
        layers = self.backbone_layers
        return 4 * self.backbone_width * 2 ** (len(layers) - 1) if layers else self.backbone_width

    @property
    def grid_stride(self) -> int:
        return self.backbone_stride * self.patch_size

    def validate_backbone(self, image_size, patch_size) -> None:
        if not all(isinstance(d, int) and d > 0 for d in self.backbone_layers):
            raise ValueError(f"backbone_layers={self.backbone_layers!r} must be positive ints (blocks per stage)")
        check_positive(backbone_width=self.backbone_width, backbone_norm_groups=self.backbone_norm_groups,
                       backbone_norm_eps=self.backbone_norm_eps, backbone_std_eps=self.backbone_std_eps,
                       patch_size=patch_size)
        check_choice("backbone_std_style", self.backbone_std_style, STD_STYLES)
        # every GroupNorm sees a multiple of `width` channels
        check_divisible("backbone_width", self.backbone_width, "backbone_norm_groups", self.backbone_norm_groups)
        stride = self.backbone_stride * patch_size
        for side in pair(image_size):
            if side % stride:
                raise ValueError(
                    f"image_size={image_size!r} must be divisible by the token stride {stride} "
                    f"(backbone stride {self.backbone_stride} x patch_size={patch_size})"
                )
