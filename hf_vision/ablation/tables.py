"""The papers' ablation tables as data: rows (one config switch each), default budgets, the papers' numbers.

Every number in `paper` was read from the paper's text (ViT arXiv:2010.11929, MAE arXiv:2111.06377, Swin
arXiv:2103.14030); `None` where the paper has no number for that row (or one that could not be read reliably,
said in the table's note). The models here are small enough for a 2-core CPU on the embedded 32x32 digits, so a
row's paper number is the direction to compare with, not a value to match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A small ViT for the ablations on 32x32 images: 8x8 patches of 4 px, 4 blocks of width 64 (~0.2M parameters).
ABLATION_VIT = dict(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=128)
# The same encoder as an MAE, with a 4 x 32 decoder (the paper: 8 x 512 behind a 1024-d encoder; fewer blocks here
# to fit the CPU budget, the width ratio kept at 1/2). Unnormalised pixels, as the baseline of MAE Table 1 (the
# mae preset normalises them, as the released models do).
ABLATION_MAE = dict(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=128, decoder_hidden_size=32, decoder_num_hidden_layers=4,
                    decoder_num_attention_heads=2, decoder_intermediate_size=128, norm_pix_loss=False)
# R+ViT hybrid: one bottleneck stage (stride 4) of width 16, then the same ViT on its 8x8 map (patch_size 1).
ABLATION_HYBRID = dict(image_size=32, patch_size=1, backbone_layers=(1,), backbone_width=16, backbone_norm_groups=8,
                       hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                       pooling="cls", position_embedding_type="learned")
# Swin for 32x32: 2-px patches (16x16 tokens), windows of 4, two stages of two blocks (each stage shifts once).
ABLATION_SWIN = dict(image_size=32, patch_size=2, embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4,
                     drop_path_rate=0.0)

VIT_PRESET = "vit-base-patch16-224"
HYBRID_PRESET = "vit-base-r50-s16-224"
SWIN_PRESET = "swin-tiny-patch4-window7-224"


@dataclass(frozen=True)
class Row:
    """One line of a table: what it changes and what the paper measured for it.

    kind "classifier": `preset` + `config` build the model trained from scratch by `finetune` (top-1).
    kind "mae": `config` overrides ABLATION_MAE for `pretrain`; its encoder is then fine-tuned and linear-probed.
    """

    name: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    preset: str = VIT_PRESET
    learning_rate: float | None = None  # None: the table's
    steps_scale: float = 1.0  # this row trains for steps_scale x the table's steps (compute budgets)
    augmentation: str = "crop-random"  # MAE pre-training augmentation (PretrainArguments.augmentation)
    paper: dict[str, float | None] = field(default_factory=dict)  # metric -> the paper's number
    x: float | None = None  # position on a curve (the mask ratio)


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    source: str  # where the paper's numbers are
    setting: str  # the paper's setting (model, data, schedule, metric)
    claim: str  # what the paper concludes
    rows: tuple[Row, ...]
    reference: str  # the row every other row is compared with (the paper's default)
    steps: dict[str, int]  # default optimizer steps per phase: train (classifier) or pretrain/finetune/probe (MAE)
    learning_rate: float = 1e-3
    plot: str = "bars"  # "bars" or "curve" (x = Row.x)
    note: str = ""

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("finetune_top1", "probe_top1") if self.rows[0].kind == "mae" else ("top1",)

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"table {self.name!r} has no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")


def _vit(name: str, paper: float | None = None, **config: Any) -> Row:
    return Row(name, "classifier", {**ABLATION_VIT, **config}, paper={"top1": paper})


def _mae(name: str, ft: float | None, lin: float | None, *, x: float | None = None, augmentation: str = "crop-random",
         **config: Any) -> Row:
    return Row(name, "mae", {**ABLATION_MAE, **config}, augmentation=augmentation,
               paper={"finetune_top1": ft, "probe_top1": lin}, x=x)


MAE_SETTING = ("ViT-L/16 MAE, 800 epochs of pre-training on ImageNet-1K, then end-to-end fine-tuning (ft, 50 epochs) "
               "and linear probing (lin, 90 epochs); ImageNet-1K top-1 (%). Defaults: decoder 8 x 512, unnormalised "
               "pixels, random-size crop, mask ratio 75%")
MAE_STEPS = {"pretrain": 130, "finetune": 80, "probe": 50}

TABLES: dict[str, Table] = {}


def _mae_table(name: str, title: str, **fields: Any) -> Table:
    """An MAE table: the shared paper setting and default steps unless the table says otherwise."""
    return Table(name, title, **{"setting": MAE_SETTING, "steps": dict(MAE_STEPS), **fields})


def _add(table: Table) -> None:
    names = [r.name for r in table.rows]
    assert len(set(names)) == len(names) and table.reference in names, table.name
    TABLES[table.name] = table


_add(Table(
    "vit-pooling", "ViT: class token vs global average pooling, each at a small learning-rate sweep",
    source="ViT appendix D.3, Figure 9 (curves, no table)",
    setting="ImageNet 5-shot linear accuracy over 7 epochs of training (Figure 9's curves; the model is not "
            "named there)",
    claim="both work about equally well once each has its own learning rate (CLS 8e-4, GAP 3e-4; GAP at 8e-4 is "
          "worse)",
    rows=tuple(
        Row(f"{pooling} lr={lr:g}", "classifier", {**ABLATION_VIT, "pooling": pooling}, learning_rate=lr,
            paper={"top1": None})
        for pooling in ("cls", "gap") for lr in (3e-4, 1e-3, 3e-3)
    ),
    reference="cls lr=0.001", steps={"train": 220},
    note="Figure 9 gives curves, not numbers: the paper column is empty; compare each pooling at its best rate.",
))
_add(Table(
    "vit-posemb", "ViT: position embedding none vs learned 1-D vs fixed 2-D sin-cos",
    source="ViT appendix D.4, Table 8",
    setting="ViT-B/16 pre-trained on JFT-300M, ImageNet 5-shot linear accuracy (a fraction, not %); position "
            "embeddings added once after the stem",
    claim="no position embedding is clearly worse (0.614); 1-D, 2-D and relative are equal (0.640-0.642)",
    rows=(
        _vit("none", 0.61382, position_embedding_type="none"),
        _vit("learned 1-D", 0.64206, position_embedding_type="learned"),
        _vit("sin-cos 2-D", 0.64001, position_embedding_type="sincos2d"),
    ),
    reference="learned 1-D", steps={"train": 300},
    note="The paper's 2-D row is a learned (X, Y) embedding; ours is the fixed 2-D sin-cos table (a learned 2-D "
         "variant does not exist in our ViT). The relative-position row (0.64032) has no counterpart here.",
))
_add(Table(
    "vit-vs-hybrid", "ViT vs R+ViT hybrid at a small and a 3x larger training budget",
    source="ViT appendix, Table 6 (the data of Figure 5)",
    setting="pre-trained 7 epochs on JFT-300M, fine-tuned on ImageNet, top-1 (%): ViT-B/32 80.73 vs R50x1+ViT-B/32 "
            "84.90 (55 vs 106 exaFLOPs); ViT-B/16 84.15 vs R50x1+ViT-B/16 85.58 (224 vs 274 exaFLOPs)",
    claim="the hybrid wins at small compute; the gap closes as compute grows",
    rows=(
        Row("ViT, 1x steps", "classifier", dict(ABLATION_VIT), paper={"top1": 80.73}),
        Row("hybrid, 1x steps", "classifier", dict(ABLATION_HYBRID), preset=HYBRID_PRESET, paper={"top1": 84.90}),
        Row("ViT, 3x steps", "classifier", dict(ABLATION_VIT), steps_scale=3.0, paper={"top1": 84.15}),
        Row("hybrid, 3x steps", "classifier", dict(ABLATION_HYBRID), preset=HYBRID_PRESET, steps_scale=3.0,
            paper={"top1": 85.58}),
    ),
    reference="ViT, 1x steps", steps={"train": 120},
    note="The paper grows compute with model size (B/32 -> B/16); we grow it with training steps. Paper numbers of "
         "the B/32 pair sit beside our 1x rows, of the B/16 pair beside our 3x rows.",
))
_add(_mae_table(
    "mae-mask-ratio", "MAE: mask ratio", source="MAE Figure 5",
    claim="75% is good for both; linear probing rises steadily up to 75% (54.6% at 10%), fine-tuning is flat over "
          "40-80%",
    rows=tuple(
        _mae(f"{round(r * 100)}%", ft, lin, x=r, mask_ratio=r)
        for r, ft, lin in ((0.1, None, 54.6), (0.3, None, 61.7), (0.5, None, 69.9), (0.75, 84.9, 73.5),
                           (0.9, 84.5, 66.1))
    ),
    reference="75%", plot="curve",
    note="Figure 5's fine-tuning labels could not be matched to their ratios from the text we could read, except "
         "75% (84.9) and 90% (84.5); the other fine-tuning cells are left empty.",
))
_add(_mae_table(
    "mae-decoder", "MAE: decoder depth and width", source="MAE Table 1a/1b",
    claim="a deeper decoder helps linear probing (65.5 -> 73.5), barely fine-tuning; width matters little",
    rows=(
        _mae("depth 1", 84.8, 65.5, decoder_num_hidden_layers=1),
        _mae("depth 2", 84.9, 70.0, decoder_num_hidden_layers=2),
        _mae("depth 4", 84.9, 71.9, decoder_num_hidden_layers=4),
        _mae("depth 8", 84.9, 73.5, decoder_num_hidden_layers=8),
        _mae("width 16 (1/4)", 84.8, 71.3, decoder_hidden_size=16, decoder_intermediate_size=64),
        _mae("width 64 (1x)", 84.3, 73.1, decoder_hidden_size=64, decoder_intermediate_size=256),
    ),
    reference="depth 4",
    note="Depth rows use width 32 (1/2 of the encoder, as the paper's 512 of 1024). Width rows use our default depth "
         "4 and carry the paper's numbers for the same width ratio (256 and 1024 of a 1024-d encoder, at depth 8).",
))
_add(_mae_table(
    "mae-mask-token", "MAE: encoder without vs with mask tokens", source="MAE Table 1c and Table 2",
    setting=MAE_SETTING + "; FLOPs relative to the encoder without mask tokens",
    claim="without mask tokens is better (lin 73.5 vs 59.6) and 3.3x cheaper in FLOPs (2.8x wall clock)",
    rows=(
        _mae("encoder w/o [M]", 84.9, 73.5, encoder_mask_tokens=False),
        _mae("encoder w/ [M]", 84.2, 59.6, encoder_mask_tokens=True),
    ),
    reference="encoder w/o [M]",
))
_add(_mae_table(
    "mae-target", "MAE: reconstruction target with vs without per-patch normalisation",
    source="MAE Table 1d",
    claim="normalised pixels are better (ft 85.4 vs 84.9, lin 73.9 vs 73.5)",
    rows=(
        _mae("pixel (w/o norm)", 84.9, 73.5, norm_pix_loss=False),
        _mae("pixel (w/ norm)", 85.4, 73.9, norm_pix_loss=True),
    ),
    reference="pixel (w/o norm)",
))
_add(_mae_table(
    "mae-sampling", "MAE: mask sampling", source="MAE Table 1f",
    claim="random sampling is best; block sampling degrades at 75%; grid is an easier task with worse features",
    rows=(
        _mae("random 75%", 84.9, 73.5, mask_strategy="random", mask_ratio=0.75),
        _mae("block 50%", 83.9, 72.3, mask_strategy="block", mask_ratio=0.5),
        _mae("block 75%", 82.8, 63.9, mask_strategy="block", mask_ratio=0.75),
        _mae("grid 75%", 84.0, 66.0, mask_strategy="grid", mask_ratio=0.75),
    ),
    reference="random 75%",
))
_add(_mae_table(
    "mae-augmentation", "MAE: pre-training data augmentation", source="MAE Table 1e",
    claim="cropping (fixed or random size) is best; colour jitter hurts; no augmentation still works",
    rows=(
        _mae("none", 84.0, 65.7, augmentation="none"),
        _mae("crop, fixed size", 84.7, 73.1, augmentation="crop-fixed"),
        _mae("crop, rand size", 84.9, 73.5, augmentation="crop-random"),
        _mae("crop + color jit", 84.3, 71.9, augmentation="crop-color"),
    ),
    reference="crop, rand size",
    note="none: centre crop, no flip; fixed size: a random crop of 0.77 of the area (224 of 256), flip; random "
         "size: RandomResizedCrop(0.2, 1), flip (our default); + colour jitter 0.4 on brightness/contrast/saturation.",
))
_add(Table(
    "swin-shift-relpos", "Swin: shifted windows and position encoding", source="Swin Table 4",
    setting="Swin-T trained 300 epochs on ImageNet-1K, top-1 (%)",
    claim="shifting adds 1.1 points (80.2 -> 81.3); relative bias is best (no pos. 80.1, abs. 80.5, abs.+rel. 81.3, "
          "rel. 81.3)",
    rows=(
        Row("shifted, rel. pos.", "classifier", dict(ABLATION_SWIN), preset=SWIN_PRESET, paper={"top1": 81.3}),
        Row("w/o shifting", "classifier", {**ABLATION_SWIN, "shifted_windows": False}, preset=SWIN_PRESET,
            paper={"top1": 80.2}),
        Row("no pos.", "classifier", {**ABLATION_SWIN, "use_relative_position_bias": False}, preset=SWIN_PRESET,
            paper={"top1": 80.1}),
        Row("abs. pos.", "classifier", {**ABLATION_SWIN, "use_relative_position_bias": False,
                                        "use_absolute_position_embeddings": True}, preset=SWIN_PRESET,
            paper={"top1": 80.5}),
        Row("abs.+rel. pos.", "classifier", {**ABLATION_SWIN, "use_absolute_position_embeddings": True},
            preset=SWIN_PRESET, paper={"top1": 81.3}),
    ),
    reference="shifted, rel. pos.", steps={"train": 160},
))


def list_tables() -> list[str]:
    return list(TABLES)


def get_table(name: str) -> Table:
    if name not in TABLES:
        raise ValueError(f"table={name!r} is not one of {', '.join(TABLES)}")
    return TABLES[name]
