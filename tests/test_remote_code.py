"""A saved checkpoint must work where neither hf_vision nor modeling can be imported (remote code), and
through transformers' pipelines."""
from __future__ import annotations

import json
import subprocess
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import hf_vision

from .cases import tiny_vit
from .isolation import isolated_command

# Runs in a fresh interpreter that cannot import this project (tests/isolation.py), then loads the checkpoint
# through transformers alone.
_ISOLATED = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from PIL import Image
    from transformers import AutoModel, AutoModelForImageClassification, pipeline
    ckpt, pixels_file = sys.argv[1], sys.argv[2]
    x = torch.from_numpy(np.load(pixels_file))
    clf = AutoModelForImageClassification.from_pretrained(ckpt, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(ckpt, trust_remote_code=True).eval()
    assert "hf_vision" not in sys.modules and "modeling" not in sys.modules
    image = Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype("uint8"))
    preds = pipeline("image-classification", model=ckpt, trust_remote_code=True)(image, top_k=3)
    feats = pipeline("image-feature-extraction", model=ckpt, trust_remote_code=True)(image)
    print(json.dumps({
        "logits": clf(x).logits.tolist(),
        "pooled": base(x).pooler_output.tolist(),
        "classes": [type(clf).__module__, type(base).__module__],
        "preds": preds,
        "feats_shape": list(np.asarray(feats).shape),
    }))
    """
)


def run_isolated(checkpoint, pixels: torch.Tensor, tmp_path) -> dict:
    """Run `_ISOLATED` on a checkpoint in a fresh interpreter that cannot import this project; its JSON report."""
    np.save(tmp_path / "x.npy", pixels.numpy())
    result = subprocess.run(
        isolated_command(_ISOLATED, str(checkpoint), str(tmp_path / "x.npy")),
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
             "TRANSFORMERS_VERBOSITY": "error"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    config = tiny_vit(num_labels=3, id2label={0: "cat", 1: "dog", 2: "fish"}, label2id={"cat": 0, "dog": 1, "fish": 2})
    model = hf_vision.ViTForImageClassification(config).eval()
    model.save_pretrained(path)
    return path, model


def test_checkpoint_is_self_contained(checkpoint):
    path, _ = checkpoint
    config = json.loads((path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_vit.ViTConfig",
        "AutoModel": "modeling_vit.ViTModel",
        "AutoModelForImageClassification": "modeling_vit.ViTForImageClassification",
    }
    for name in ("modeling_vit.py", "configuration_vit.py", "attention.py", "block.py", "pretrained.py"):
        imports = [line.strip() for line in (path / name).read_text().splitlines()
                   if line.strip().startswith(("from ", "import "))]
        assert imports
        for line in imports:
            assert not line.startswith("from ..") and "hf_vision" not in line and not line.startswith(
                ("from modeling", "import modeling")), (name, line)


def test_remote_code_without_the_package(checkpoint, tmp_path):
    path, model = checkpoint
    x = torch.randn(2, 3, 32, 32)
    payload = run_isolated(path, x, tmp_path)
    assert all(module.startswith("transformers_modules") for module in payload["classes"])
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(payload["logits"]), model(x).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(payload["pooled"]), model.vit(x).pooler_output, atol=1e-5, rtol=1e-5)
    assert {p["label"] for p in payload["preds"]} == {"cat", "dog", "fish"}
    assert payload["feats_shape"][-1] == 32


def test_pipelines_with_registered_classes(checkpoint):
    path, model = checkpoint
    image = Image.fromarray((np.random.default_rng(1).random((64, 48, 3)) * 255).astype("uint8"))
    classifier = pipeline("image-classification", model=str(path))
    assert type(classifier.model) is hf_vision.ViTForImageClassification  # registered class wins, no remote code
    preds = classifier(image, top_k=3)
    assert abs(sum(p["score"] for p in preds) - 1.0) < 1e-4
    # the pipeline's preprocessing is the checkpoint's: resize to 32x32 and normalise with mean/std 0.5
    processed = classifier.image_processor(image, return_tensors="pt")["pixel_values"]
    assert processed.shape == (1, 3, 32, 32) and processed.min() >= -1.0 - 1e-6 and processed.max() <= 1.0 + 1e-6
    with torch.no_grad():
        probs = model(processed).logits.softmax(-1)[0]
    best = max(preds, key=lambda p: p["score"])
    assert best["label"] == model.config.id2label[int(probs.argmax())]
    extractor = pipeline("image-feature-extraction", model=str(path))
    features = np.asarray(extractor(image))
    assert features.shape == (1, 17, 32)
