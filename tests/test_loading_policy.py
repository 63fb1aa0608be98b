"""Issue #16: loading never leaves random or wrong weights without saying so, through every entry point.

A tiny saved classifier is damaged one way per case (its safetensors edited by hand); each case must raise an
error naming the key, the shapes or dtype and the flag that allows it, or (new label set, opt-in flags) load with
ONE Python warning naming the freshly initialised keys.
"""
from __future__ import annotations

import json
import subprocess
import textwrap
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageClassification

import hf_vision

from .cases import tiny_vit
from .isolation import isolated_command

HEAD_W, HEAD_B = "classifier.weight", "classifier.bias"
BODY = "vit.encoder.blocks.0.mlp.fc1.weight"  # (64, 32) in tiny_vit


def _missing_head(state):
    del state[HEAD_W], state[HEAD_B]


def _transposed_head(state):
    state[HEAD_W] = state[HEAD_W].t().contiguous()


def _wrong_shape_head(state):  # 4 rows while config.json still says 3 labels
    state[HEAD_W], state[HEAD_B] = torch.zeros(4, 32), torch.zeros(4)


def _int64(state):
    state[BODY] = state[BODY].round().long()


def _nan(state):
    state[BODY][0, 0] = float("nan")


def _inf(state):
    state[BODY][1, 1] = float("inf")


# case id -> (damage, substrings the error must contain: key, shapes/dtype, flag)
DAMAGED = {
    "missing_head": (_missing_head, [HEAD_W, "(3, 32)", "strict=False"]),
    "transposed_head": (_transposed_head, [HEAD_W, "(32, 3)", "(3, 32)", "ignore_mismatched_sizes=True"]),
    "wrong_shape_head": (_wrong_shape_head, [HEAD_W, "(4, 32)", "(3, 32)", "ignore_mismatched_sizes=True"]),
    "int64_weight": (_int64, [BODY, "torch.int64", "refused"]),
    "nan_weight": (_nan, [BODY, "NaN or infinite", "allow_nonfinite=True"]),
    "inf_weight": (_inf, [BODY, "NaN or infinite", "allow_nonfinite=True"]),
}
# what lets each damaged checkpoint load anyway, and which keys then start fresh (int64 has no such flag)
OPT_IN = {
    "missing_head": ({"strict": False}, [HEAD_B, HEAD_W]),
    "transposed_head": ({"ignore_mismatched_sizes": True}, [HEAD_W]),
    "wrong_shape_head": ({"ignore_mismatched_sizes": True}, [HEAD_B, HEAD_W]),
    "nan_weight": ({"allow_nonfinite": True}, []),
    "inf_weight": ({"allow_nonfinite": True}, []),
}
LABELS = {0: "cat", 1: "dog", 2: "fish"}


def _class_entry(path, **kw):
    return hf_vision.ViTForImageClassification.from_pretrained(path, **kw)


def _auto_entry(path, **kw):
    return AutoModelForImageClassification.from_pretrained(path, **kw)


def _package_entry(path, **kw):
    return hf_vision.from_pretrained(path, **kw)


ENTRIES = {"class": _class_entry, "auto": _auto_entry, "hf_vision": _package_entry}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The intact checkpoint and one damaged copy per case: name -> folder."""
    root = tmp_path_factory.mktemp("policy")
    torch.manual_seed(0)
    model = hf_vision.ViTForImageClassification(tiny_vit(num_labels=3, id2label=LABELS)).eval()
    model.save_pretrained(root / "intact")
    folders = {"intact": root / "intact"}
    for name, (damage, _) in DAMAGED.items():
        folder = root / name
        model.save_pretrained(folder)
        state = load_file(folder / "model.safetensors")
        damage(state)
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        folders[name] = folder
    return folders


def _fresh_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "freshly initialised" in str(w.message)]


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", DAMAGED)
def test_damaged_checkpoint_is_refused(checkpoints, case, entry):
    with pytest.raises(hf_vision.CheckpointRefusedError) as error:
        ENTRIES[entry](checkpoints[case])
    for part in DAMAGED[case][1]:
        assert part in str(error.value), (part, str(error.value))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", OPT_IN)
def test_opt_in_loads_with_one_warning(checkpoints, case, entry):
    flags, fresh = OPT_IN[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ENTRIES[entry](checkpoints[case], **flags)
    reports = _fresh_warnings(caught)
    assert len(reports) == (1 if fresh else 0), reports
    for key in fresh:
        assert key in reports[0]
    saved = load_file(checkpoints[case] / "model.safetensors")
    state = model.state_dict()
    kept = [k for k in saved if k not in fresh]
    assert kept and all(torch.allclose(state[k], saved[k], rtol=0, atol=0, equal_nan=True) for k in kept)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("change", [{"num_labels": 5}, {"id2label": {0: "a", 1: "b", 2: "c"}}],
                         ids=["num_labels", "id2label"])
def test_new_label_set_gives_a_fresh_head_with_one_warning(checkpoints, change, entry):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ENTRIES[entry](checkpoints["intact"], **change)
    reports = _fresh_warnings(caught)
    assert len(reports) == 1, reports
    assert HEAD_W in reports[0] and HEAD_B in reports[0]
    saved = load_file(checkpoints["intact"] / "model.safetensors")
    assert torch.equal(model.state_dict()[BODY], saved[BODY])
    if "num_labels" in change:
        assert model.classifier.weight.shape == (5, 32)


@pytest.mark.parametrize("entry", ENTRIES)
def test_intact_checkpoint_loads_without_warning(checkpoints, entry):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ENTRIES[entry](checkpoints["intact"])
    assert not _fresh_warnings(caught)
    saved = load_file(checkpoints["intact"] / "model.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


# Remote code: every case in ONE fresh interpreter that cannot import this project.
_ISOLATED = textwrap.dedent(
    """
    import json, sys, warnings
    from transformers import AutoModelForImageClassification
    folders, opt_in = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    report = {}
    for name, folder in folders.items():
        try:
            AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
            refused = None
        except Exception as error:  # the type is checked below: it must not be one that pipeline() swallows
            refused = f"{type(error).__name__}: {error}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            extra = {"num_labels": 5} if name == "intact" else opt_in.get(name)
            loaded = None
            if extra is not None:
                model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True, **extra)
                loaded = type(model).__module__
        fresh = [str(w.message) for w in caught if "freshly initialised" in str(w.message)]
        report[name] = {"refused": refused, "loaded": loaded, "fresh": fresh}
    assert "hf_vision" not in sys.modules
    print(json.dumps(report))
    """
)


def test_remote_code_applies_the_policy(checkpoints, tmp_path):
    folders = {name: str(path) for name, path in checkpoints.items()}
    folders["zero_std_processor"] = str(_with_processor(checkpoints["intact"], tmp_path / "std", image_std=[0.5, 0, 0.5]))
    opt_in = {name: flags for name, (flags, _) in OPT_IN.items()}
    result = subprocess.run(
        isolated_command(_ISOLATED, json.dumps(folders), json.dumps(opt_in)),
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
             "TRANSFORMERS_VERBOSITY": "error"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["intact"]["refused"] is None
    assert len(report["intact"]["fresh"]) == 1 and HEAD_W in report["intact"]["fresh"][0]
    for name, (_, parts) in DAMAGED.items():
        assert (report[name]["refused"] or "").startswith("CheckpointRefusedError: "), (name, report[name])
        for part in parts:
            assert part in report[name]["refused"], (name, part)
        if name in OPT_IN:
            assert report[name]["loaded"].startswith("transformers_modules"), report[name]
            assert len(report[name]["fresh"]) == (1 if OPT_IN[name][1] else 0), report[name]
    assert "image_std" in (report["zero_std_processor"]["refused"] or ""), report["zero_std_processor"]


# Config fields that can only produce NaN or a silent mismatch: refused at construction and at from_pretrained of
# a saved checkpoint whose config.json was edited. (field override, substrings of the error)
BAD_CONFIGS = {
    "layer_norm_eps_zero": ({"layer_norm_eps": 0.0}, ["layer_norm_eps=0.0", "positive"]),
    "layer_norm_eps_negative": ({"layer_norm_eps": -1e-6}, ["layer_norm_eps=-1e-06", "positive"]),
    "image_std_zero": ({"image_std": [0.5, 0.0, 0.5]}, ["image_std=[0.5, 0.0, 0.5]", "finite positive"]),
    "image_std_length": ({"image_std": [0.5, 0.5]}, ["image_std", "num_channels=3"]),
    "dropout": ({"hidden_dropout_prob": 1.0}, ["hidden_dropout_prob=1.0", "[0, 1)"]),
    "drop_path_rate": ({"drop_path_rate": -0.1}, ["drop_path_rate=-0.1", "[0, 1)"]),
    "architectures": ({"architectures": ["BertModel"]}, ["architectures", "'BertModel'", "'ViTModel'"]),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_is_refused_at_construction(case):
    override, parts = BAD_CONFIGS[case]
    with pytest.raises(ValueError) as error:
        tiny_vit(**override)
    for part in parts:
        assert part in str(error.value), (part, str(error.value))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", [*BAD_CONFIGS, "id2label_vs_num_labels"])
def test_edited_config_json_is_refused(checkpoints, tmp_path, case, entry):
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(checkpoints["intact"], folder)
    saved = json.loads((folder / "config.json").read_text())
    override, parts = BAD_CONFIGS.get(case, ({"num_labels": 5}, ["num_labels=5", "id2label (3 entries)"]))
    (folder / "config.json").write_text(json.dumps({**saved, **override}))
    with pytest.raises(ValueError) as error:
        ENTRIES[entry](folder)
    for part in parts:
        assert part in str(error.value), (part, str(error.value))


def test_other_families_check_the_shared_fields():
    with pytest.raises(ValueError, match="layer_norm_eps"):
        hf_vision.SwinConfig(layer_norm_eps=0.0)
    with pytest.raises(ValueError, match="mlp_ratio"):
        hf_vision.SwinConfig(mlp_ratio=0.0)
    with pytest.raises(ValueError, match="mask_ratio"):
        hf_vision.MAEConfig(mask_ratio=1.0)
    with pytest.raises(ValueError, match="image_std"):
        hf_vision.MAEConfig(image_std=[0.2, 0.2, 0.0])
    with pytest.raises(ValueError, match="architectures"):
        hf_vision.MAEConfig(architectures=["ViTForImageClassification"])


def test_processor_with_zero_std_is_refused(checkpoints, tmp_path):
    import shutil

    from transformers import AutoImageProcessor

    from hf_vision.data.transforms import PreprocessSpec

    folder = tmp_path / "edited"
    shutil.copytree(checkpoints["intact"], folder)
    saved = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**saved, "image_std": [0.5, 0.0, 0.5]}))
    with pytest.raises(ValueError, match=r"image_std=\[0.5, 0.0, 0.5\] must hold finite positive"):
        PreprocessSpec.from_processor(AutoImageProcessor.from_pretrained(folder))
    with pytest.raises(ValueError, match="image_std"):
        PreprocessSpec((32, 32), (0.5, 0.5, 0.5), (0.5, 0.5))


@pytest.mark.parametrize("config_class", ["ViTConfig", "HybridConfig", "MAEConfig", "SwinConfig"])
def test_constructed_config_with_disagreeing_labels_is_refused(config_class):
    # transformers alone keeps num_labels and renames the labels LABEL_0.., silently dropping the caller's names
    with pytest.raises(ValueError, match=r"num_labels=3 disagrees with id2label \(2 entries\)"):
        getattr(hf_vision, config_class)(num_labels=3, id2label={0: "cat", 1: "dog"})
    config = getattr(hf_vision, config_class)(id2label={0: "cat", 1: "dog"})
    assert config.num_labels == 2 and config.id2label[1] == "dog"


def _with_processor(source, folder, **fields):
    import shutil

    shutil.copytree(source, folder)
    saved = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**saved, **fields}))
    return folder


BAD_PROCESSORS = {
    "std_zero": {"image_std": [0.5, 0.0, 0.5]},
    "std_negative": {"image_std": [0.5, -0.5, 0.5]},
    "std_inf": {"image_std": [0.5, float("inf"), 0.5]},
    "mean_nan": {"image_mean": [0.5, float("nan"), 0.5]},
}


def _pipeline_entry(path):
    from transformers import pipeline

    return pipeline("image-classification", model=str(path))


@pytest.mark.parametrize("entry", [*ENTRIES, "pipeline"])
@pytest.mark.parametrize("case", BAD_PROCESSORS)
def test_checkpoint_with_a_nan_making_processor_is_refused(checkpoints, tmp_path, case, entry):
    """The weights are fine, but the preprocessing shipped beside them can only yield inf/NaN inputs."""
    folder = _with_processor(checkpoints["intact"], tmp_path / "edited", **BAD_PROCESSORS[case])
    load = _pipeline_entry if entry == "pipeline" else ENTRIES[entry]
    field = next(iter(BAD_PROCESSORS[case]))
    with pytest.raises(hf_vision.CheckpointRefusedError,
                       match=rf"{field}=.* in .*preprocessor_config.json must hold finite"):
        load(folder)


@pytest.mark.parametrize("case", DAMAGED)
def test_pipeline_refuses_a_damaged_checkpoint_instead_of_falling_back(checkpoints, case):
    """pipeline() retries the next candidate class on ValueError/RuntimeError/OSError/TypeError; for our class names
    that is transformers' own ViT with every weight random. Our refusal must stop it."""
    with pytest.raises(hf_vision.CheckpointRefusedError) as error:
        _pipeline_entry(checkpoints[case])
    for part in DAMAGED[case][1]:
        assert part in str(error.value), (part, str(error.value))


def test_refusal_is_not_an_exception_type_that_pipeline_retries_past():
    assert not issubclass(hf_vision.CheckpointRefusedError, (OSError, ValueError, TypeError, RuntimeError))
