"""hf_vision.analysis against cases with known answers, and scripts/visualize.py end to end on a tiny model."""
from __future__ import annotations

import itertools
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

import hf_vision
from hf_vision import analysis
from hf_vision.analysis import AnalysisNotApplicable
from hf_vision.modeling.layers.pos_embed import sincos_2d

from .cases import tiny_hybrid, tiny_mae, tiny_swin, tiny_vit

ROOT = Path(__file__).resolve().parents[1]


def _layers(matrix: torch.Tensor, *, layers: int = 3, batch: int = 2, heads: int = 4) -> tuple[torch.Tensor, ...]:
    """The same (N, N) attention in every layer, head and image."""
    n = matrix.shape[-1]
    return tuple(matrix.expand(batch, heads, n, n).clone() for _ in range(layers))


# ---------------------------------------------------------------- mean attention distance

@pytest.mark.parametrize("prefix", [0, 1])
def test_self_attention_has_zero_distance(prefix):
    grid = (3, 5)
    n = prefix + grid[0] * grid[1]
    dist = analysis.attention_distances(_layers(torch.eye(n)), grid, 16, num_prefix_tokens=prefix)
    assert dist.shape == (2, 3, 4)
    np.testing.assert_allclose(dist, 0.0, atol=1e-12)


@pytest.mark.parametrize("grid, patch, prefix", [((4, 4), 16, 1), ((3, 5), 8, 0), ((2, 7), 14, 1)])
def test_uniform_attention_distance_is_mean_pairwise_distance(grid, patch, prefix):
    n = prefix + grid[0] * grid[1]
    dist = analysis.attention_distances(_layers(torch.full((n, n), 1.0 / n)), grid, patch, num_prefix_tokens=prefix)
    cells = list(itertools.product(range(grid[0]), range(grid[1])))
    expected = np.mean([patch * math.hypot(r1 - r2, c1 - c2) for (r1, c1), (r2, c2) in itertools.product(cells, cells)])
    np.testing.assert_allclose(dist, expected, rtol=1e-9)


def test_attention_to_one_neighbour_has_patch_distance():
    """Every query looks only at the patch to its right (last column: to its left): distance = one patch."""
    gh, gw, patch = 3, 4, 16
    attn = torch.zeros(gh * gw, gh * gw)
    for r, c in itertools.product(range(gh), range(gw)):
        attn[r * gw + c, r * gw + (c + 1 if c + 1 < gw else c - 1)] = 1.0
    np.testing.assert_allclose(analysis.attention_distances(_layers(attn), (gh, gw), patch), patch)


def test_attention_distance_rejects_local_attention():
    with pytest.raises(ValueError, match="global attention"):
        analysis.attention_distances(_layers(torch.eye(49)), (14, 14), 16, num_prefix_tokens=1)


# ---------------------------------------------------------------- attention rollout

@pytest.mark.parametrize("residual", [True, False])
def test_rollout_of_identity_attention_is_identity(residual):
    rollout = analysis.attention_rollout(_layers(torch.eye(10), layers=4), residual=residual)
    torch.testing.assert_close(rollout, torch.eye(10, dtype=torch.float64).expand(2, 10, 10))


def test_rollout_multiplies_layers_in_order():
    gen = torch.Generator().manual_seed(1)
    a1, a2 = (torch.rand(6, 6, generator=gen, dtype=torch.float64).softmax(-1) for _ in range(2))
    rollout = analysis.attention_rollout((a1.expand(1, 2, 6, 6), a2.expand(1, 2, 6, 6)), residual=False)
    expected = a2.double().numpy() @ a1.double().numpy()
    np.testing.assert_allclose(rollout[0].numpy(), expected, rtol=1e-10)
    # with the residual term each layer becomes (A + I) / 2 (rows of A already sum to one)
    rollout = analysis.attention_rollout((a1.expand(1, 2, 6, 6), a2.expand(1, 2, 6, 6)))
    eye = np.eye(6)
    np.testing.assert_allclose(rollout[0].numpy(), (0.5 * a2.double().numpy() + 0.5 * eye)
                               @ (0.5 * a1.double().numpy() + 0.5 * eye), rtol=1e-10)


def test_rollout_map_reads_class_token_or_patch_mean():
    grid, prefix = (2, 3), 1
    rollout = torch.zeros(1, 7, 7, dtype=torch.float64)
    rollout[0, 0, 1 + 4] = 1.0  # the class token draws only from patch (1, 1)
    rollout[0, 1:, 1 + 2] = 1.0  # every patch draws from patch (0, 2)
    cls_map = analysis.rollout_map(rollout, grid, num_prefix_tokens=prefix, source="cls")
    mean_map = analysis.rollout_map(rollout, grid, num_prefix_tokens=prefix, source="mean")
    np.testing.assert_array_equal(cls_map[0], [[0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(mean_map[0], [[0, 0, 1], [0, 0, 0]])
    with pytest.raises(ValueError, match="class token"):
        analysis.rollout_map(rollout[:, 1:, 1:], grid, num_prefix_tokens=0, source="cls")


# ---------------------------------------------------------------- embeddings

def test_sincos_positions_are_more_similar_to_neighbours_than_to_far_positions():
    grid = (8, 8)
    sim = analysis.position_embedding_similarity(sincos_2d(64, grid, num_prefix_tokens=1), grid, num_prefix_tokens=1)
    assert sim.shape == (8, 8, 8, 8)
    np.testing.assert_allclose(np.einsum("ijij->ij", sim), 1.0, atol=1e-12)
    for r, c in [(3, 3), (4, 2), (0, 0)]:
        neighbours = [sim[r, c, r + dr, c + dc] for dr, dc in [(0, 1), (1, 0)]]
        far = sim[r, c, (r + 4) % 8, (c + 4) % 8], sim[r, c, 7 - r if r < 4 else 0, 7 - c if c < 4 else 0]
        assert min(neighbours) > max(far)
    # along a row, similarity to (3, 3) falls with distance
    row = sim[3, 3, 3, 3:]
    assert np.all(np.diff(row) < 0)


def test_position_similarity_checks_the_grid():
    with pytest.raises(ValueError, match="expected grid_size"):
        analysis.position_embedding_similarity(torch.randn(1, 17, 8), (4, 5), num_prefix_tokens=1)


def test_pca_recovers_known_patch_filter_components():
    """Filters W = Z diag(s) B with orthonormal components B (rows) and orthonormal zero-mean coefficients Z."""
    gen = torch.Generator().manual_seed(0)
    d, c, p, k = 48, 3, 4, 3
    basis, _ = torch.linalg.qr(torch.randn(c * p * p, k, generator=gen, dtype=torch.float64))  # (48, k)
    coeffs = torch.randn(d, k, generator=gen, dtype=torch.float64)
    coeffs, _ = torch.linalg.qr(coeffs - coeffs.mean(0))  # zero-mean, orthonormal columns
    scales = torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64)
    weight = (coeffs @ torch.diag(scales) @ basis.T).reshape(d, c, p, p).float() + 0.25  # a common offset too
    components, explained = analysis.patch_embedding_components(weight, num_components=5)
    assert components.shape == (5, p, p, c)
    # (k, p, p, C) -> (k, C*p*p), back to the filter layout the basis was built in
    flat = torch.from_numpy(components).permute(0, 3, 1, 2).reshape(5, -1).double()
    overlap = (flat[:k] @ basis).abs().numpy()
    np.testing.assert_allclose(overlap, np.eye(k), atol=1e-5)
    np.testing.assert_allclose(explained[:k], [25 / 35, 9 / 35, 1 / 35], atol=1e-6)
    np.testing.assert_allclose(explained[k:], 0.0, atol=1e-6)


# ---------------------------------------------------------------- models: what applies and what does not

def test_model_level_analyses_on_vit():
    model = hf_vision.ViTForImageClassification(tiny_vit()).eval()
    weight = analysis.patch_projection_weight(model)
    assert weight.shape == (32, 3, 8, 8)
    table, kind, grid, prefix = analysis.position_embedding_table(model)
    assert (kind, grid, prefix, table.shape) == ("learned", (4, 4), 1, (17, 32))
    attentions = analysis.encoder_attentions(model, torch.randn(2, 3, 32, 32))
    assert len(attentions) == 2 and attentions[0].shape == (2, 4, 17, 17)


def test_no_position_embedding_is_reported_not_drawn():
    model = hf_vision.ViTModel(tiny_vit(position_embedding_type="none")).eval()
    with pytest.raises(AnalysisNotApplicable, match="no position embedding"):
        analysis.position_embedding_table(model)


def test_visualize_writes_figures_and_lists_skipped(tmp_path):
    model = hf_vision.ViTModel(tiny_vit(pooling="gap", position_embedding_type="none")).eval()
    rng = np.random.default_rng(0)
    images = [(f"noise{i}", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for i in range(2)]
    records = analysis.visualize(model, images, tmp_path, progress=False, max_shown=1)
    drawn = {r.file for r in records if isinstance(r, analysis.FigureRecord)}
    assert drawn == {"patch_embedding_filters.png", "mean_attention_distance.png", "attention_rollout.png"}
    assert all((tmp_path / f).stat().st_size > 1000 for f in drawn)
    index = (tmp_path / "index.html").read_text()
    assert "position embedding similarity" in index and "no position embedding" in index
    captions = {r.file: r.caption for r in records if isinstance(r, analysis.FigureRecord)}
    assert "averaged over 2 images" in captions["mean_attention_distance.png"]  # max_shown limits drawing only


# ---------------------------------------------------------------- MAE

def _tiny_mae():
    return hf_vision.MAEForPreTraining(tiny_mae()).eval()


def test_mae_encoder_attention_sees_every_patch_and_config_is_restored():
    model = _tiny_mae()
    attentions = analysis.encoder_attentions(model, torch.randn(1, 3, 32, 32))
    assert attentions[0].shape == (1, 4, 17, 17)  # class token + all 16 patches, nothing masked
    assert model.config.mask_ratio == 0.75
    table, kind, grid, prefix = analysis.position_embedding_table(model)
    assert (kind, grid, prefix) == ("sincos2d", (4, 4), 1)


@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_mae_reconstruction_panels(ratio):
    from hf_vision.analysis.mae import reconstruction_panels

    model = _tiny_mae()
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    panels = reconstruction_panels(model, pixels, ratio, noise=torch.rand(2, 16))
    assert panels.shape == (2, 4, 32, 32, 3)
    mean, std = np.asarray(model.config.image_mean), np.asarray(model.config.image_std)
    original = np.clip(pixels.permute(0, 2, 3, 1).numpy() * std + mean, 0, 1)
    np.testing.assert_allclose(panels[:, 0], original, atol=1e-6)
    # (B, H, W, C) -> (B, 4, 8, 4, 8, C): per patch, is the masked panel the original or grey?
    masked = panels[:, 1].reshape(2, 4, 8, 4, 8, 3)
    orig = original.reshape(2, 4, 8, 4, 8, 3)
    visible = np.all(np.isclose(masked, orig, atol=1e-5), axis=(2, 4, 5))
    grey = np.all(masked == 0.5, axis=(2, 4, 5))
    assert np.all(visible ^ grey)
    assert np.all(grey.sum(axis=(1, 2)) == round(16 * ratio))
    # reconstruction + visible keeps the visible patches exactly
    pasted = panels[:, 3].reshape(2, 4, 8, 4, 8, 3)
    assert np.allclose(np.where(visible[:, :, None, :, None, None], pasted - orig, 0), 0, atol=1e-5)
    assert model.config.mask_ratio == 0.75


def test_reconstruction_needs_the_decoder():
    from hf_vision.analysis.mae import reconstruction_panels

    with pytest.raises(AnalysisNotApplicable, match="reconstruct"):
        reconstruction_panels(hf_vision.ViTModel(tiny_vit()), torch.rand(1, 3, 32, 32), 0.75)


# ---------------------------------------------------------------- the script

def test_visualize_script_writes_every_file(tmp_path, capsys):
    checkpoint, images, out = tmp_path / "mae", tmp_path / "images", tmp_path / "figures"
    _tiny_mae().save_pretrained(checkpoint)
    images.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for name, size in [("wide", (48, 30)), ("gray", (40, 40))]:
        array = rng.integers(0, 255, size[::-1] + ((3,) if name != "gray" else ()), dtype=np.uint8)
        Image.fromarray(array).save(images / f"{name}.png")
    script = runpy.run_path(str(ROOT / "scripts" / "visualize.py"), run_name="visualize")  # in-process: fast
    script["main"](script["parse_args"](["--model", str(checkpoint), "--images", str(images), "--output_dir",
                                         str(out), "--mask_ratios", "0.5", "0.75"]))
    expected = {"patch_embedding_filters.png", "position_embedding_similarity.png", "mean_attention_distance.png",
                "attention_rollout.png", "mae_reconstruction_mask50.png", "mae_reconstruction_mask75.png"}
    written = {p.name for p in out.glob("*.png")}
    assert written == expected
    index = (out / "index.html").read_text()
    # A freshly built model saved without any training record: both the console and the page say so.
    assert "no record of training" in capsys.readouterr().err and "class='warning'" in index
    for name in expected:
        assert f"src='{name}'" in index
        with Image.open(out / name) as png:
            assert png.size[0] > 200 and png.size[1] > 200


def test_default_model_is_the_main_jobs_output(monkeypatch, tmp_path):
    from hf_vision.analysis import report

    pretrain = runpy.run_path(str(ROOT / "scripts" / "pretrain_mae.py"), run_name="pretrain")
    default = Path(pretrain["parse_args"]([]).output_dir)
    assert default in report._main_job_output_dirs()
    unfinished, finished = tmp_path / "unfinished", tmp_path / "finished"
    (unfinished / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(report, "_main_job_output_dirs", lambda: [unfinished])
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint latest"):
        report.default_model_dir()
    finished.mkdir()
    (finished / "config.json").write_text("{}")
    monkeypatch.setattr(report, "_main_job_output_dirs", lambda: [unfinished, finished])
    assert report.default_model_dir() == finished


def test_missing_main_job_output_is_a_clear_error(monkeypatch, tmp_path):
    from hf_vision.analysis import report

    monkeypatch.setattr(report, "_main_job_output_dirs", lambda: [tmp_path / "nothing-here"])
    with pytest.raises(FileNotFoundError, match="pretrain_mae.py"):
        report.default_model_dir()


# ---------------------------------------------------------------- hybrid and Swin

def test_hybrid_has_no_patch_filters_but_attention_works():
    model = hf_vision.HybridForImageClassification(tiny_hybrid()).eval()
    with pytest.raises(AnalysisNotApplicable, match="ResNet"):
        analysis.patch_projection_weight(model)
    view = analysis.describe(model)
    assert (view.grid_size, view.patch_size) == ((2, 2), 16)  # stride-16 trunk, 1x1 patches
    attentions = analysis.encoder_attentions(model, torch.randn(1, 3, 32, 32))
    assert analysis.attention_distances(attentions, view.grid_size, view.patch_size,
                                        num_prefix_tokens=1).shape == (1, 2, 4)


def test_shift_regions_known_layout():
    from hf_vision.analysis.swin import shift_regions

    bands = np.array([0, 0, 0, 0, 1, 1, 2, 2])  # 8 tokens, window 4, shift 2
    np.testing.assert_array_equal(shift_regions(8, 8, 4, 2), 3 * bands[:, None] + bands[None, :])


@pytest.mark.parametrize("h, w, window, shift", [(8, 8, 4, 2), (8, 12, 4, 2), (14, 14, 7, 3), (6, 9, 3, 1)])
def test_region_mask_matches_the_models_shift_mask(h, w, window, shift):
    from hf_vision.analysis.swin import region_attention_mask
    from hf_vision.modeling.swin.windows import shift_mask

    ours = region_attention_mask(h, w, window, shift)
    np.testing.assert_array_equal(ours, shift_mask(h, w, window, shift).numpy() == 0)
    assert ours[0].all()  # the top-left window is untouched by the shift: one region
    assert not ours[-1].all()  # the bottom-right window mixes wrapped regions


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_map_puts_each_key_where_it_came_from(shift):
    from hf_vision.analysis.swin import window_attention_map

    hp = wp = 8
    window, key = 4, (1, 3)  # every window's centre query attends only to its token at row 1, column 3
    n = window * window
    attention = torch.zeros(1, 4, 2, n, n)
    attention[:, :, :, (window // 2) * window + window // 2, key[0] * window + key[1]] = 1.0
    amap = window_attention_map(attention, (hp, wp), window, shift, (hp, wp))
    expected = np.zeros((hp, wp))
    for a, b in itertools.product(range(2), range(2)):  # window (a, b) of the rolled map
        expected[(a * window + key[0] + shift) % hp, (b * window + key[1] + shift) % wp] = 1.0
    np.testing.assert_array_equal(amap[0], expected)


@pytest.mark.parametrize("shift", [0, 1])
def test_window_attention_distance_known_answers(shift):
    from hf_vision.analysis.swin import window_attention_distances

    window, stride, n = 2, 4, 4
    eye = torch.eye(n).expand(1, 4, 3, n, n)  # 4 windows of a 4x4 map, 3 heads, every token attends to itself
    np.testing.assert_allclose(window_attention_distances(eye, (4, 4), window, shift, (4, 4), stride), 0.0)
    uniform = torch.full((1, 4, 3, n, n), 1.0 / n)
    # a 2x2 window: from each token, distances 0, 1, 1, sqrt(2) tokens; shift=1 wraps tokens to the far side
    cells = [(r, c) for r in range(4) for c in range(4)]
    if shift == 0:
        expected = stride * (2 + math.sqrt(2)) / 4
    else:  # brute force over the rolled windows, in original coordinates
        total = []
        for wr, wc in itertools.product(range(2), range(2)):
            members = [((wr * 2 + r + 1) % 4, (wc * 2 + c + 1) % 4) for r in range(2) for c in range(2)]
            total += [np.mean([stride * math.hypot(a[0] - b[0], a[1] - b[1]) for b in members]) for a in members]
        expected = np.mean(total)
        assert len(cells) == len(total)
    np.testing.assert_allclose(window_attention_distances(uniform, (4, 4), window, shift, (4, 4), stride), expected)
    # padding: a 3x3 map padded to 4x4; only real tokens count (each query's weights renormalised over them)
    padded = window_attention_distances(uniform, (4, 4), window, 0, (3, 3), stride)
    real = [[(r, c) for r in range(wr * 2, wr * 2 + 2) for c in range(wc * 2, wc * 2 + 2) if r < 3 and c < 3]
            for wr, wc in itertools.product(range(2), range(2))]
    expected = np.mean([np.mean([stride * math.hypot(a[0] - b[0], a[1] - b[1]) for b in group])
                        for group in real for a in group])
    np.testing.assert_allclose(padded, expected)


def test_swin_shifted_block_attention_respects_the_region_mask():
    from hf_vision.analysis.swin import region_attention_mask, stage_windows

    model = hf_vision.SwinForImageClassification(tiny_swin()).eval()
    blocks, stride = stage_windows(model, torch.randn(1, 3, 32, 32), stage=0)
    assert stride == 4 and [(b.window, b.shift, b.size) for b in blocks] == [(2, 0, (8, 8)), (2, 1, (8, 8))]
    allowed = torch.from_numpy(region_attention_mask(8, 8, 2, 1))  # (nW, 4, 4)
    weights = blocks[1].attention[0]  # (nW, heads, 4, 4)
    assert weights.shape == (16, 1, 4, 4)
    assert torch.all(weights.masked_select(~allowed[:, None]) < 1e-30)
    assert torch.all(weights.masked_select(allowed[:, None]) > 0)
    with pytest.raises(ValueError, match="stage=5"):
        stage_windows(model, torch.randn(1, 3, 32, 32), stage=5)


def test_visualize_swin(tmp_path):
    model = hf_vision.SwinModel(tiny_swin()).eval()
    rng = np.random.default_rng(0)
    images = [(f"noise{i}", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for i in range(2)]
    records = analysis.visualize(model, images, tmp_path, progress=False, max_shown=1)
    drawn = {r.file for r in records if isinstance(r, analysis.FigureRecord)}
    assert drawn == {"patch_embedding_filters.png", "swin_window_attention.png", "swin_shift_regions.png",
                     "mean_attention_distance.png"}
    skipped = {r.name for r in records if isinstance(r, analysis.Skipped)}
    assert skipped == {"position embedding similarity", "attention rollout"}
    assert "over 2 images" in next(r.caption for r in records if getattr(r, "file", "") == "mean_attention_distance.png")
    with pytest.raises(AnalysisNotApplicable, match="windows"):
        analysis.describe(model)


def test_centre_crop_keeps_the_middle_at_the_model_aspect():
    from hf_vision.analysis.inspect_model import centre_crop_to_aspect

    image = np.arange(6 * 10).reshape(6, 10, 1)
    square = centre_crop_to_aspect(image, 1.0)
    np.testing.assert_array_equal(square, image[:, 2:8])
    np.testing.assert_array_equal(centre_crop_to_aspect(image.transpose(1, 0, 2), 1.0), image.transpose(1, 0, 2)[2:8])
    assert centre_crop_to_aspect(image, 0.5).shape[:2] == (5, 10)


def _zero_qkv(model):
    """q = k = 0 everywhere, so every attention row is uniform over the keys it may see."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("attn.qkv"):
                module.weight.zero_()
                module.bias.zero_()
                table = getattr(model.get_submodule(name.rpartition(".")[0]), "relative_position_bias_table", None)
                if table is not None:
                    table.zero_()
    return model


def test_model_with_uniform_attention_end_to_end():
    model = _zero_qkv(hf_vision.ViTModel(tiny_vit()).eval())
    view = analysis.describe(model)
    dist = analysis.attention_distances(analysis.encoder_attentions(model, torch.randn(2, 3, 32, 32)),
                                        view.grid_size, view.patch_size, num_prefix_tokens=view.num_prefix_tokens)
    cells = list(itertools.product(range(4), range(4)))
    expected = np.mean([8 * math.hypot(a[0] - b[0], a[1] - b[1]) for a in cells for b in cells])
    np.testing.assert_allclose(dist, expected, rtol=1e-5)


def test_swin_with_uniform_attention_end_to_end():
    from hf_vision.analysis.swin import all_stage_windows, swin_attention_distances

    model = _zero_qkv(hf_vision.SwinModel(tiny_swin()).eval())
    stages = all_stage_windows(model, torch.randn(1, 3, 32, 32))
    per_block = swin_attention_distances(stages)
    assert [d.shape for d in per_block] == [(1, 1), (1, 1), (1, 2), (1, 2), (1, 4)]
    # regular 2x2 windows: from each token, distances 0, 1, 1, sqrt(2) tokens of 4 px (stage 1) and 8 px (stage 2)
    np.testing.assert_allclose(per_block[0], 4 * (2 + math.sqrt(2)) / 4, rtol=1e-5)
    np.testing.assert_allclose(per_block[2], 8 * (2 + math.sqrt(2)) / 4, rtol=1e-5)
    # stage 3's 2x2 map is one window: the same distances at 16 px
    np.testing.assert_allclose(per_block[4], 16 * (2 + math.sqrt(2)) / 4, rtol=1e-5)


def test_load_model_applies_the_cpu_opt_in_unless_told_not_to(tmp_path):
    from torch import nn

    from hf_vision.analysis.report import load_model
    from hf_vision.optimize import is_optimized_for_cpu

    _tiny_mae().save_pretrained(tmp_path)
    assert is_optimized_for_cpu(load_model(tmp_path))
    plain = load_model(tmp_path, optimize_for_cpu=False)
    assert not is_optimized_for_cpu(plain) and any(type(m) is nn.Linear for m in plain.modules())
    script = runpy.run_path(str(ROOT / "scripts" / "visualize.py"), run_name="visualize")
    assert script["parse_args"](["--no_optimize_for_cpu"]).optimize_for_cpu is False
    assert script["parse_args"]([]).optimize_for_cpu is True


def test_untrained_warning_only_for_folders_without_a_training_record(tmp_path):
    from hf_vision.analysis.report import untrained_warning

    _tiny_mae().save_pretrained(tmp_path / "fresh")
    warning = untrained_warning(tmp_path / "fresh")
    assert warning and str(tmp_path / "fresh") in warning and "random initialisation" in warning
    (tmp_path / "fresh" / "train_log.jsonl").write_text("{}\n")
    assert untrained_warning(tmp_path / "fresh") is None
    assert untrained_warning("org/some-hub-model") is None  # cannot tell without downloading
