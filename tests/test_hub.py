"""Push and pull without a network: a loopback fake Hub (fake_hub.py), hand-built offline caches, fresh
interpreters that cannot import this project, and the loading errors. A real-Hub round trip is opt-in:
HF_VISION_REAL_HUB_REPO=user/scratch-repo HF_TOKEN=... pytest tests/test_hub.py -k real_hub
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import huggingface_hub
import pytest
import torch
import transformers
import yaml
from huggingface_hub import constants as hub_constants
from safetensors.torch import load_file, save_file

import hf_vision
from hf_vision import convert
from hf_vision.hub import check_checkpoint_folder, push_folder, push_to_hub, save_with_card
from hf_vision.model_card import build_model_card, card_for_folder, card_for_model, result_metrics, validate_card

from .cases import CASES, tiny_mae, tiny_swin, tiny_vit
from .fake_hub import FakeHub
from .isolation import isolated_command

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_fake_write_token"


def _pixels(seed: int = 0, size: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _tiny_classifier(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return hf_vision.ViTForImageClassification(tiny_vit(**overrides)).eval()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub; huggingface_hub in this process talks to it (and only to it) with offline mode lifted."""
    with FakeHub(token=TOKEN) as server:
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub_constants, "ENDPOINT", server.url)
        monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        server.cache = tmp_path / "client-cache"
        yield server


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON", "TRANSFORMERS_"))}
    env.update(HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="2")
    env.update(extra)
    return env


# Any connection attempt fails loudly (in addition to running without a network namespace where possible).
_NO_NETWORK_PREAMBLE = textwrap.dedent("""
    import socket
    def _refuse(*args, **kwargs):
        raise OSError("network disabled in this test")
    socket.socket.connect = _refuse
    socket.create_connection = _refuse
""")


def _run_python(code: str, *, cwd: Path, env: dict[str, str], isolated: bool, no_network: bool = False) -> dict:
    # isolated: a fresh interpreter that cannot import this project (tests/isolation.py), from a temporary cwd.
    preamble = _NO_NETWORK_PREAMBLE if no_network else ""
    cmd = isolated_command(preamble + textwrap.dedent(code)) if isolated else \
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + preamble + textwrap.dedent(code)]
    if no_network and shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"]).returncode == 0:
        cmd = ["unshare", "-rn", *cmd]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------- push


def test_push_uploads_a_complete_checkpoint_in_one_commit(hub):
    model = _tiny_classifier()
    info = push_to_hub(model, "org/tiny-vit", token=TOKEN, commit_message="Add tiny ViT",
                       card_kwargs=dict(datasets=["cifar10"], metrics={"eval_accuracy": 0.625, "eval_runtime": 2.0},
                                        training_args={"learning_rate": 0.001, "epochs": 3}))
    repo = hub.repos["org/tiny-vit"]
    history = repo.history("main")
    assert [c.message for c in history] == ["Add tiny ViT", "initial commit"]  # one commit carries everything
    assert info.oid == history[0].oid
    files = history[0].files
    expected = {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "modeling_vit.py",
                "configuration_vit.py", "pretrained.py", "attention.py", "block.py", "patch_embed.py", "pos_embed.py"}
    assert expected <= set(files)
    config = json.loads(files["config.json"])
    assert config["auto_map"] == {"AutoConfig": "configuration_vit.ViTConfig", "AutoModel": "modeling_vit.ViTModel",
                                  "AutoModelForImageClassification": "modeling_vit.ViTForImageClassification"}
    # flattened remote code: no parent-package imports survive
    assert "from .." not in files["modeling_vit.py"].decode()
    weights = load_file_from_bytes(files["model.safetensors"])
    torch.testing.assert_close(weights["classifier.weight"], model.classifier.weight.detach())
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["pipeline_tag"] == "image-classification" and meta["license"] == "apache-2.0"
    assert meta["model-index"][0]["results"][0]["metrics"] == [{"type": "accuracy", "value": 0.625, "name": "accuracy"}]
    # the files travelled inline (preupload said "regular"), and the card was validated by the server first
    methods = [path for _, path in hub.requests]
    assert "/api/validate-yaml" in methods and "/api/models/org/tiny-vit/commit/main" in methods


def load_file_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(data)


def test_push_to_branch_private_repo_and_commit_messages(hub):
    push_to_hub(_tiny_classifier(0), "org/vit", token=TOKEN, commit_message="v1 on main")
    push_to_hub(_tiny_classifier(1), "org/vit", token=TOKEN, revision="dev", commit_message="v2 on dev",
                commit_description="longer text")
    repo = hub.repos["org/vit"]
    assert [c.message for c in repo.history("dev")] == ["v2 on dev", "v1 on main", "initial commit"]
    assert [c.message for c in repo.history("main")] == ["v1 on main", "initial commit"]
    assert repo.history("dev")[0].description == "longer text"
    assert repo.resolve("dev").files["model.safetensors"] != repo.resolve("main").files["model.safetensors"]

    push_to_hub(_tiny_classifier(2), "org/secret", token=TOKEN, private=True)
    assert hub.repos["org/secret"].private and not repo.private
    push_to_hub(_tiny_classifier(0), "org/vit", token=TOKEN, private=True, commit_message="now private")
    assert repo.private  # an existing public repo switched visibility
    push_to_hub(_tiny_classifier(0), "org/vit", token=TOKEN, commit_message="visibility untouched")
    assert repo.private
    push_to_hub(_tiny_classifier(0), "org/vit", token=TOKEN, private=False)
    assert not repo.private
    with pytest.raises(huggingface_hub.errors.RepositoryNotFoundError):
        huggingface_hub.hf_hub_download("org/secret", "config.json", cache_dir=hub.cache, token=False)
    path = huggingface_hub.hf_hub_download("org/secret", "config.json", cache_dir=hub.cache, token=TOKEN)
    assert json.loads(Path(path).read_text())["model_type"] == "hfv_vit"
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError):  # writing needs the token
        push_to_hub(_tiny_classifier(), "org/other", token=False)
    push_to_hub(_tiny_classifier(), "bare-name", token=TOKEN)  # no namespace: the token's user owns it
    assert f"{hub.user}/bare-name" in hub.repos and len(hub.repos[f"{hub.user}/bare-name"].history()) == 2


def test_invalid_card_is_rejected_before_any_upload(hub, tmp_path):
    model = _tiny_classifier()
    model.save_pretrained(tmp_path)
    (tmp_path / "README.md").write_text("---\nlicense: [not, a, string]\n---\n# card\n")
    with pytest.raises(ValueError, match="license"):
        push_folder(tmp_path, "org/bad-card", token=TOKEN)
    assert "org/bad-card" not in hub.repos or len(hub.repos["org/bad-card"].history()) == 1


def test_fake_hub_checks_card_metadata_like_the_hub(hub):
    """The server side of the check: huggingface_hub sends README.md to /api/validate-yaml before committing."""
    api = huggingface_hub.HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("org/y")
    with pytest.raises(ValueError, match="license"):
        api.create_commit("org/y", [huggingface_hub.CommitOperationAdd("README.md", b"---\nlicense: [a]\n---\n")],
                          commit_message="bad card")
    assert len(hub.repos["org/y"].history()) == 1  # nothing committed
    card = huggingface_hub.ModelCard("---\nlicense: apache-2.0\ntags: [1]\n---\n# x\n")
    with pytest.raises(ValueError, match="tags"):
        card.validate()  # huggingface_hub's own online check, answered by the fake
    card_for_model(_tiny_classifier()).validate()


def test_push_folder_builds_card_from_run_files_and_skips_training_leftovers(hub, tmp_path):
    model = _tiny_classifier()
    model.save_pretrained(tmp_path)
    (tmp_path / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.5, "eval_top5": 0.9, "epoch": 2.0}))
    (tmp_path / "run_args.json").write_text(json.dumps({"learning_rate": 3e-4, "batch_size": 8}))
    (tmp_path / "optimizer.pt").write_bytes(b"x")
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    push_folder(tmp_path, "org/run", token=TOKEN, card_kwargs=dict(datasets=["imagenet-1k"], eval_split="validation",
                                                                  base_model="org/vit-base"))
    files = hub.repos["org/run"].resolve("main").files
    assert "optimizer.pt" not in files and not any(name.startswith("checkpoint-") for name in files)
    card = huggingface_hub.ModelCard(files["README.md"].decode())
    assert card.data.base_model == "org/vit-base" and card.data.datasets == ["imagenet-1k"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"accuracy": 0.5, "top5": 0.9}
    assert card.data.eval_results[0].dataset_split == "validation"
    assert "| learning_rate | 0.0003 |" in card.text and "| batch_size | 8 |" in card.text


def test_push_folder_refuses_a_folder_that_would_not_load(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        check_checkpoint_folder(tmp_path)
    _tiny_classifier().save_pretrained(tmp_path)
    (tmp_path / "modeling_vit.py").unlink()
    with pytest.raises(ValueError, match="modeling_vit.py"):
        check_checkpoint_folder(tmp_path)


# One case per model class: every family's folder carries the auto_map entries the issue asks for.
_ONE_PER_CLASS = list({case.model_cls: case for case in CASES}.values())


@pytest.mark.parametrize("case", _ONE_PER_CLASS, ids=[c.id for c in _ONE_PER_CLASS])
def test_every_family_saves_a_pushable_folder_with_a_valid_card(case, tmp_path):
    torch.manual_seed(0)
    model = case.model_cls(case.make_config())
    model.save_pretrained(tmp_path)
    check_checkpoint_folder(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert {"AutoConfig", "AutoModel", case.auto_class} <= set(auto_map)
    family = model.config.model_type
    if family == "hfv_swin":
        assert "AutoBackbone" in auto_map
    if family == "hfv_mae":
        assert "AutoModelForPreTraining" in auto_map
    card = card_for_folder(tmp_path, repo_id="org/x")
    validate_card(card)
    tags = card.data.tags
    assert any(tag.startswith("arxiv:") for tag in tags)
    expected_pipeline = "image-classification" if case.auto_class == "AutoModelForImageClassification" \
        else "image-feature-extraction"
    assert card.data.pipeline_tag == expected_pipeline
    stored = sum(t.numel() for t in load_file(tmp_path / "model.safetensors").values())
    assert f"({stored:,})" in card.text


# ------------------------------------------------------------------------------------------------------- pull


def test_fresh_interpreter_without_hf_vision_loads_pushed_checkpoints(hub, tmp_path):
    main, dev, secret = _tiny_classifier(0), _tiny_classifier(1), _tiny_classifier(2)
    push_to_hub(main, "org/tiny", token=TOKEN)
    push_to_hub(dev, "org/tiny", token=TOKEN, revision="dev")
    push_to_hub(secret, "org/secret", token=TOKEN, private=True)
    torch.manual_seed(0)
    swin = hf_vision.SwinForImageClassification(tiny_swin()).eval()
    swin_backbone = hf_vision.SwinBackbone(tiny_swin()).eval()
    mae = hf_vision.MAEForPreTraining(tiny_mae()).eval()
    push_to_hub(swin, "org/swin", token=TOKEN)
    push_to_hub(swin_backbone, "org/swin-backbone", token=TOKEN)
    push_to_hub(mae, "org/mae", token=TOKEN)
    pixels = _pixels()
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(5))
    torch.save(pixels, tmp_path / "pixels.pt")
    torch.save(noise, tmp_path / "noise.pt")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    out = _run_python(f"""
        import json, torch
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
        x = torch.load({str(tmp_path / 'pixels.pt')!r})
        out = {{}}
        model = AutoModelForImageClassification.from_pretrained("org/tiny", trust_remote_code=True).eval()
        out["module"] = type(model).__module__
        out["main"] = model(x).logits.tolist()
        dev = AutoModelForImageClassification.from_pretrained("org/tiny", revision="dev", trust_remote_code=True)
        out["dev"] = dev.eval()(x).logits.tolist()
        backbone = AutoModel.from_pretrained("org/tiny", trust_remote_code=True).eval()
        out["backbone"] = type(backbone).__name__
        out["mean"] = AutoImageProcessor.from_pretrained("org/tiny").image_mean
        try:
            AutoModel.from_pretrained("org/secret", trust_remote_code=True)
            out["anonymous_private"] = "loaded"
        except OSError as error:
            out["anonymous_private"] = type(error).__name__
        secret = AutoModelForImageClassification.from_pretrained("org/secret", trust_remote_code=True,
                                                                 token={TOKEN!r}).eval()
        out["secret"] = secret(x).logits.tolist()
        from transformers import AutoBackbone, AutoModelForPreTraining
        backbone = AutoBackbone.from_pretrained("org/swin-backbone", trust_remote_code=True).eval()
        out["swin_maps"] = [f.tolist() for f in backbone(x).feature_maps]
        out["swin"] = AutoModelForImageClassification.from_pretrained("org/swin", trust_remote_code=True).eval()(x).logits.tolist()
        noise = torch.load({str(tmp_path / 'noise.pt')!r})
        mae = AutoModelForPreTraining.from_pretrained("org/mae", trust_remote_code=True).eval()
        out["mae_module"] = type(mae).__module__
        out["mae"] = mae(x, noise=noise).logits.tolist()
        print(json.dumps(out))
    """, cwd=workdir, env=_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="0"),
        isolated=True)
    assert out["module"].startswith("transformers_modules"), out["module"]
    assert out["backbone"] == "ViTModel"
    assert out["mean"] == list(main.config.image_mean)
    assert out["anonymous_private"] != "loaded"
    with torch.no_grad():
        for key, model in (("main", main), ("dev", dev), ("secret", secret)):
            torch.testing.assert_close(torch.tensor(out[key]), model(pixels).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(out["swin"]), swin(pixels).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(out["mae"]), mae(pixels, noise=noise).logits, atol=1e-5, rtol=1e-5)
    assert out["mae_module"].startswith("transformers_modules")
    with torch.no_grad():
        maps = swin_backbone(pixels).feature_maps
    assert len(out["swin_maps"]) == len(maps) > 0
    for got, expected in zip(out["swin_maps"], maps):
        torch.testing.assert_close(torch.tensor(got), expected, atol=1e-5, rtol=1e-5)


def test_with_hf_vision_imported_registered_classes_win(hub):
    model = _tiny_classifier()
    push_to_hub(model, "org/tiny", token=TOKEN)
    for loaded in (hf_vision.from_pretrained("org/tiny", cache_dir=hub.cache),
                   transformers.AutoModelForImageClassification.from_pretrained("org/tiny", cache_dir=hub.cache)):
        assert type(loaded) is hf_vision.ViTForImageClassification  # no trust_remote_code, no remote module
        with torch.no_grad():
            torch.testing.assert_close(loaded(_pixels()).logits, model(_pixels()).logits, atol=0, rtol=0)
    backbone = hf_vision.from_pretrained("org/tiny", cache_dir=hub.cache, auto_class="AutoModel")
    assert type(backbone) is hf_vision.ViTModel


def _hand_built_cache(home: Path, repo_id: str, folders: dict[str, Path]) -> None:
    """$HF_HOME/hub/models--org--name/{refs/<branch>, snapshots/<sha>/...}: what a finished download leaves."""
    root = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    for i, (branch, folder) in enumerate(folders.items()):
        sha = f"{i + 1:040x}"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / branch).write_text(sha)
        shutil.copytree(folder, root / "snapshots" / sha)


def test_offline_cache_in_process(tmp_path):
    assert hub_constants.HF_HUB_OFFLINE  # conftest: tests never touch the network
    main, dev = _tiny_classifier(0), _tiny_classifier(1)
    main.save_pretrained(tmp_path / "main")
    dev.save_pretrained(tmp_path / "dev")
    _hand_built_cache(tmp_path / "home", "org/cached", {"main": tmp_path / "main", "dev": tmp_path / "dev"})
    cache = tmp_path / "home" / "hub"
    with torch.no_grad():
        for revision, model in ((None, main), ("dev", dev)):
            loaded = hf_vision.from_pretrained("org/cached", cache_dir=cache, revision=revision)
            torch.testing.assert_close(loaded(_pixels()).logits, model(_pixels()).logits, atol=0, rtol=0)
    with pytest.raises(OSError):
        hf_vision.from_pretrained("org/not-cached", cache_dir=cache)


def test_offline_cache_in_a_fresh_process_with_network_disabled(tmp_path):
    """No network namespace (unshare -rn) plus refused sockets: only the hand-built cache can serve the files."""
    model = _tiny_classifier()
    model.save_pretrained(tmp_path / "ckpt")
    home = tmp_path / "home"
    _hand_built_cache(home, "org/cached", {"main": tmp_path / "ckpt"})
    torch.save(_pixels(), tmp_path / "pixels.pt")
    out = _run_python(f"""
        import json, torch
        x = torch.load({str(tmp_path / 'pixels.pt')!r})
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained("org/cached", trust_remote_code=True).eval()
        print(json.dumps({{"module": type(model).__module__, "logits": model(x).logits.tolist()}}))
    """, cwd=tmp_path, env=_env(HF_HOME=str(home), HF_HUB_OFFLINE="1"), isolated=True, no_network=True)
    assert out["module"].startswith("transformers_modules")
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(out["logits"]), model(_pixels()).logits, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ foreign checkpoints


def _tiny_timm_vit(num_classes: int = 5):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                             depth=2, num_heads=4, num_classes=num_classes).eval()


def test_timm_hub_checkpoint_dispatch(tmp_path, monkeypatch):
    """The timm path reads timm's config.json + safetensors (from a local folder or the offline cache) with timm."""
    from timm.models import save_for_hf

    source = _tiny_timm_vit()
    save_for_hf(source, str(tmp_path / "timm-ckpt"), safe_serialization=True)
    _hand_built_cache(tmp_path / "home", "timm/tiny_vit.test", {"main": tmp_path / "timm-ckpt"})
    received = []
    sentinel = _tiny_classifier()

    def fake_converter(model):
        received.append(model)
        return sentinel

    monkeypatch.setattr(convert, "TIMM_CONVERTERS", [(lambda m: True, fake_converter)])
    for name in (str(tmp_path / "timm-ckpt"), "timm/tiny_vit.test"):
        assert hf_vision.from_pretrained(name, cache_dir=tmp_path / "home" / "hub") is sentinel
    for model in received:  # timm rebuilt the same architecture with the saved weights
        for key, value in source.state_dict().items():
            torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0)
    monkeypatch.setattr(convert, "TIMM_CONVERTERS", [])
    with pytest.raises(ValueError, match="no timm converter"):
        hf_vision.from_pretrained(str(tmp_path / "timm-ckpt"))


def _registered_timm_vit() -> bool:
    try:
        _ = convert.from_timm(_tiny_timm_vit())
        return True
    except ValueError:
        return False


def test_timm_vit_conversion_matches_timm_outputs(tmp_path):
    from timm.models import save_for_hf

    source = _tiny_timm_vit()
    if not _registered_timm_vit():
        pytest.skip("no timm ViT converter registered in hf_vision.convert yet")
    save_for_hf(source, str(tmp_path / "timm-ckpt"), safe_serialization=True)
    ours = hf_vision.from_pretrained(str(tmp_path / "timm-ckpt"))
    with torch.no_grad():
        torch.testing.assert_close(ours(_pixels()).logits, source(_pixels()), atol=1e-4, rtol=1e-4)
    report = hf_vision.hub.convert_checkpoint(str(tmp_path / "timm-ckpt"), tmp_path / "out")
    assert report["verified"] and report["max_abs_diff"] < 1e-4
    validate_card((tmp_path / "out" / "README.md").read_text())


def test_transformers_checkpoint_dispatch(tmp_path):
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, num_labels=5)
    torch.manual_seed(0)
    source = transformers.ViTForImageClassification(config).eval()
    source.save_pretrained(tmp_path / "hf-vit")
    if "vit" not in convert.TRANSFORMERS_CONVERTERS:
        with pytest.raises(ValueError, match="model_type='vit'"):
            hf_vision.from_pretrained(str(tmp_path / "hf-vit"))
        pytest.skip("no transformers ViT converter registered yet (dispatch error checked)")
    ours = hf_vision.from_pretrained(str(tmp_path / "hf-vit"))
    with torch.no_grad():
        torch.testing.assert_close(ours(_pixels()).logits, source(_pixels()).logits, atol=1e-4, rtol=1e-4)


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random values everywhere: fresh zero biases / unit norms would hide a mis-mapped weight."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval()


def _timm_swin(folder: Path):
    from timm.models import save_for_hf

    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = _perturbed(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5,
                                         img_size=64, window_size=4, embed_dim=16, depths=(2, 2, 2, 2),
                                         num_heads=(1, 2, 2, 4)))
    save_for_hf(model, str(folder), safe_serialization=True)
    return model, 64, lambda out: out


def _hf_vit(folder: Path):
    torch.manual_seed(0)
    model = _perturbed(transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=5)))
    model.save_pretrained(folder)
    return model, 32, lambda out: out.logits


def _hf_mae(folder: Path):
    torch.manual_seed(0)
    model = _perturbed(transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=2, decoder_num_attention_heads=2,
        decoder_intermediate_size=32, layer_norm_eps=1e-6)))
    model.save_pretrained(folder)
    return model, 32, lambda out: out.logits


def _hf_swin(folder: Path):
    torch.manual_seed(0)
    model = _perturbed(transformers.SwinForImageClassification(transformers.SwinConfig(
        image_size=64, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=2, num_labels=5)))
    model.save_pretrained(folder)
    return model, 64, lambda out: out.logits


@pytest.mark.parametrize("repo_id, build, family", [
    ("timm/swin_tiny_patch4_window7_224.test", _timm_swin, "hfv_swin"),
    ("google/vit-tiny-patch8-32.test", _hf_vit, "hfv_vit"),
    ("facebook/vit-mae-tiny.test", _hf_mae, "hfv_mae"),
    ("microsoft/swin-tiny.test", _hf_swin, "hfv_swin"),
], ids=["timm-swin", "transformers-vit", "transformers-vit-mae", "transformers-swin"])
def test_foreign_hub_checkpoint_in_one_call_from_the_offline_cache(repo_id, build, family, tmp_path):
    source, size, output_of = build(tmp_path / "released")
    _hand_built_cache(tmp_path / "home", repo_id, {"main": tmp_path / "released"})
    ours = hf_vision.from_pretrained(repo_id, cache_dir=tmp_path / "home" / "hub")
    assert ours.config.model_type == family
    pixels = _pixels(size=size)
    kwargs = {}
    if family == "hfv_mae":  # the same random masking on both sides
        kwargs["noise"] = torch.rand(2, (size // 8) ** 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(pixels, **kwargs).logits, output_of(source(pixels, **kwargs)),
                                   atol=1e-4, rtol=1e-4)


def test_foreign_checkpoint_at_a_new_resolution_and_head(tmp_path):
    _hf_vit(tmp_path / "released")
    ours = hf_vision.from_pretrained(tmp_path / "released", image_size=48, num_labels=3)
    assert ours.config.image_size == 48 and ours.classifier.out_features == 3
    assert ours.vit.embeddings.position_embeddings.shape == (1, 1 + 6 * 6, 32)  # resized 4x4 -> 6x6 grid
    assert ours(_pixels(size=48)).logits.shape == (2, 3)


def test_official_files_go_to_the_preset_loader(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(convert.OFFICIAL_LOADERS, "vit-", lambda path, name, **kw: calls.append((path, name, kw)) or "ok")
    (tmp_path / "ViT-B_16.npz").write_bytes(b"")
    assert hf_vision.from_pretrained(tmp_path / "ViT-B_16.npz", preset="vit-base-patch16-224", num_labels=10) == "ok"
    assert calls == [(tmp_path / "ViT-B_16.npz", "vit-base-patch16-224", {"num_labels": 10})]


def _script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package) to run its parse_args + main."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("build", [_hf_mae, _hf_swin], ids=["vit-mae", "swin"])
def test_convert_checkpoint_verifies_against_transformers(build, tmp_path):
    build(tmp_path / "released")
    report = hf_vision.hub.convert_checkpoint(tmp_path / "released", tmp_path / "out")
    assert report["kind"] == "transformers" and report["verified"] and report["compared"] == "logits"
    assert report["max_abs_diff"] < 1e-4
    check_checkpoint_folder(tmp_path / "out")


def test_convert_script_end_to_end(hub, tmp_path, monkeypatch):
    from timm.models import save_for_hf

    source = _perturbed(_tiny_timm_vit())
    save_for_hf(source, str(tmp_path / "timm-ckpt"), safe_serialization=True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    script = _script("convert")
    script.main(script.parse_args([str(tmp_path / "timm-ckpt"), str(tmp_path / "out"), "--push_to_hub", "org/converted"]))
    pushed = hub.repos["org/converted"].resolve("main")
    assert pushed.message == f"Convert {tmp_path / 'timm-ckpt'} to hf-vision"
    assert {"model.safetensors", "README.md", "conversion.json", "modeling_vit.py"} <= set(pushed.files)
    report = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert report["kind"] == "timm" and report["verified"] and report["max_abs_diff"] < 1e-4
    validate_card((tmp_path / "out" / "README.md").read_text())
    check_checkpoint_folder(tmp_path / "out")
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(_pixels()).logits, source(_pixels()), atol=1e-4, rtol=1e-4)


def test_single_file_needs_a_preset(tmp_path):
    (tmp_path / "ViT-B_16.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="preset"):
        hf_vision.from_pretrained(tmp_path / "ViT-B_16.npz")
    with pytest.raises(FileNotFoundError, match="ViT-L_16.npz"):
        hf_vision.from_pretrained(tmp_path / "ViT-L_16.npz", preset="vit-large-patch16-224")


# ------------------------------------------------------------------------------------------- loading errors


def test_missing_weight_is_named(tmp_path):
    _tiny_classifier().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    removed = sorted(k for k in weights if k.endswith("fc2.weight"))[-1]  # the last block's MLP output weight
    del weights[removed]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(hf_vision.CheckpointRefusedError, match="missing") as error:
        hf_vision.ViTForImageClassification.from_pretrained(tmp_path)
    assert removed in str(error.value)
    with pytest.warns(UserWarning, match=removed.replace(".", r"\.")):
        hf_vision.from_pretrained(tmp_path, strict=False)


def test_unexpected_weight_is_named(tmp_path):
    _tiny_classifier().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["vit.extra_projection.weight"] = torch.zeros(3, 3)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(hf_vision.CheckpointRefusedError, match=r"not in the model.*vit\.extra_projection\.weight"):
        hf_vision.from_pretrained(tmp_path)


def test_wrong_shape_names_tensor_and_both_shapes(tmp_path):
    _tiny_classifier().save_pretrained(tmp_path)
    with pytest.raises(hf_vision.CheckpointRefusedError) as error:
        hf_vision.from_pretrained(tmp_path, intermediate_size=48)
    message = str(error.value)
    assert "mlp.fc1.weight" in message and "(64, 32)" in message and "(48, 32)" in message
    # asked for explicitly: re-initialised instead
    model = hf_vision.from_pretrained(tmp_path, intermediate_size=48, ignore_mismatched_sizes=True)
    assert model.config.intermediate_size == 48


def test_new_heads_load_without_complaint(tmp_path):
    backbone = hf_vision.ViTModel(tiny_vit()).eval()
    backbone.save_pretrained(tmp_path / "backbone")
    classifier, info = hf_vision.ViTForImageClassification.from_pretrained(tmp_path / "backbone",
                                                                           output_loading_info=True)
    assert info["missing_keys"] == {"classifier.weight", "classifier.bias"}  # only the new head
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    torch.testing.assert_close(classifier.vit.embeddings.cls_token, backbone.embeddings.cls_token)

    trained = _tiny_classifier()
    trained.save_pretrained(tmp_path / "cls")
    relabelled = hf_vision.from_pretrained(tmp_path / "cls", num_labels=7)  # num_labels changed: a new head
    assert relabelled.classifier.weight.shape == (7, 32)
    torch.testing.assert_close(relabelled.vit.norm.weight, trained.vit.norm.weight)
    dropped = hf_vision.from_pretrained(tmp_path / "cls", auto_class="AutoModel")  # the head is left behind
    assert type(dropped) is hf_vision.ViTModel


def test_partial_head_is_an_error(tmp_path):
    _tiny_classifier().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["classifier.bias"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(hf_vision.CheckpointRefusedError, match="classifier.bias"):
        hf_vision.from_pretrained(tmp_path)


# -------------------------------------------------------------------------------------------------- model cards


def test_card_content_and_local_validation():
    model = _tiny_classifier()
    card = card_for_model(model, repo_id="org/tiny", datasets="cifar10", base_model="google/vit-base-patch16-224",
                          metrics={"eval_accuracy": 0.75, "eval_loss": 0.6, "eval_samples_per_second": 100.0},
                          training_args={"optimizer": "adamw", "learning_rate": 0.001})
    validate_card(card)
    data = card.data
    assert data.library_name == "transformers" and data.base_model == "google/vit-base-patch16-224"
    assert "arxiv:2010.11929" in data.tags and "vit" in data.tags
    assert {r.metric_type: r.metric_value for r in data.eval_results} == {"accuracy": 0.75, "loss": 0.6}
    text = card.text
    for needle in ("| Resolution | 32x32 |", "| Patch size | 8 |", "| optimizer | adamw |", "| accuracy | 0.75 |",
                   'hf_vision.from_pretrained("org/tiny")', "trust_remote_code=True", "@inproceedings{dosovitskiy2021vit",
                   f"{sum(p.numel() for p in model.parameters()):,}"):
        assert needle in text, needle
    preset_card = build_model_card(hf_vision.get_config("vit-base-patch16-224"))
    assert "| Preset | vit-base-patch16-224 |" in preset_card.text


def test_saved_checkpoint_carries_its_card(tmp_path):
    model = hf_vision.MAEForPreTraining(tiny_mae())
    save_with_card(model, tmp_path, datasets=["imagenet-1k"], metrics={"eval_loss": 0.42},
                   training_args={"mask_ratio": 0.75, "epochs": 800})
    card = huggingface_hub.ModelCard.load(tmp_path / "README.md")
    validate_card(card)
    # training loss is a training statistic, not a result on the evaluation split
    assert result_metrics({"train_loss": 0.3, "train_runtime": 5.0, "train_samples_per_second": 9.0, "epoch": 1,
                           "eval_top1": 0.5, "note": "text"}) == {"top1": 0.5}
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert "arxiv:2111.06377" in card.data.tags
    assert card.data.eval_results[0].task_type == "image-feature-extraction"
    assert 'pipeline("image-feature-extraction"' in card.text and "| mask_ratio | 0.75 |" in card.text
    check_checkpoint_folder(tmp_path)


@pytest.mark.parametrize("bad, field", [
    ({"license": "apache2"}, "license"),
    ({"pipeline_tag": "image-classifier"}, "pipeline_tag"),
    ({"tags": [1, 2]}, "tags"),
])
def test_validation_names_the_bad_field(bad, field):
    card = card_for_model(_tiny_classifier())
    meta = yaml.safe_load(str(card).split("---")[1])
    meta.update(bad)
    with pytest.raises(ValueError, match=field):
        validate_card(f"---\n{yaml.safe_dump(meta)}---\n{card.text}")


def test_validation_rejects_non_numeric_results():
    card = card_for_model(_tiny_classifier(), datasets=["cifar10"], metrics={"accuracy": 0.5})
    broken = str(card).replace("value: 0.5", "value: high")
    with pytest.raises(ValueError, match="non-numeric"):
        validate_card(broken)


# ------------------------------------------------------------------------------------------------------ scripts


def test_push_script_end_to_end(hub, tmp_path, monkeypatch):
    _tiny_classifier().save_pretrained(tmp_path / "run")
    (tmp_path / "run" / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.4}))
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # how a user's credentials reach the script
    script = _script("push_to_hub")
    script.main(script.parse_args([str(tmp_path / "run"), "org/from-script", "--private", "--revision", "exp1",
                                   "--commit_message", "from the script", "--datasets", "cifar10"]))
    repo = hub.repos["org/from-script"]
    assert repo.private and repo.history("exp1")[0].message == "from the script"
    card = huggingface_hub.ModelCard(repo.resolve("exp1").files["README.md"].decode())
    assert card.data.eval_results[0].metric_value == 0.4 and card.data.datasets == ["cifar10"]


# ------------------------------------------------------------------------------------------ real Hub (opt-in)


@pytest.mark.skipif(not os.environ.get("HF_VISION_REAL_HUB_REPO"), reason="set HF_VISION_REAL_HUB_REPO and HF_TOKEN")
def test_real_hub_round_trip(monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    repo_id = os.environ["HF_VISION_REAL_HUB_REPO"]
    model = _tiny_classifier()
    push_to_hub(model, repo_id, private=True, commit_message="hf-vision test round trip")
    loaded = hf_vision.from_pretrained(repo_id, force_download=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded(_pixels()).logits, model(_pixels()).logits)


# ----------------------------------------------------------------------------- every publishing entry point


def _card_snippet(readme: str, needle: str = "pipeline(") -> str:
    """The card's python code block that uses `needle` (the snippet a stranger would copy)."""
    import re

    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if needle in b]
    assert len(blocks) == 1, blocks
    return blocks[0]


def _finetune(out: Path, *extra: str) -> dict:
    argv = ["--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "16",
            "--per_device_eval_batch_size", "64", "--max_eval_samples", "64", "--logging_steps", "1",
            "--shuffle_buffer", "64", "--report_to", "none", "--config_overrides",
            "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64", *extra]
    return _script("finetune").main(argv)


def _check_published(repo, *, pipeline_tag: str) -> dict[str, bytes]:
    """One commit holding a complete, loadable repository with our validated card; returns its files."""
    history = repo.history("main")
    assert len(history) == 2, [c.message for c in history]  # the push + the repo's initial commit
    files = history[0].files
    config = json.loads(files["config.json"])
    for auto, reference in config["auto_map"].items():
        assert reference.rpartition(".")[0] + ".py" in files, auto
    assert {"model.safetensors", "preprocessor_config.json", "README.md"} <= set(files)
    readme = files["README.md"].decode()
    validate_card(readme)
    card = huggingface_hub.ModelCard(readme)
    assert "hf-vision" in card.data.tags and card.data.pipeline_tag == pipeline_tag
    assert "generated_from_trainer" not in card.data.tags
    assert huggingface_hub.metadata_load  # the same parser the Hub client uses for front matter
    assert yaml.safe_load(readme.split("---")[1])["library_name"] == "transformers"
    return files


def test_every_entry_point_publishes_a_complete_repo_in_one_commit(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # how the scripts' credentials arrive
    model = _tiny_classifier()
    torch.manual_seed(0)
    mae = hf_vision.MAEForPreTraining(tiny_mae()).eval()
    model.push_to_hub("org/ep-method")                                        # PreTrainedModel.push_to_hub
    model.save_pretrained(tmp_path / "saved", push_to_hub=True, repo_id="org/ep-save")  # save_pretrained(push)
    push_to_hub(model, "org/ep-lib")                                           # hf_vision.push_to_hub
    mae.push_to_hub("org/ep-mae")
    script = _script("push_to_hub")                                            # scripts/push_to_hub.py
    script.main(script.parse_args([str(tmp_path / "saved"), "org/ep-script"]))
    finetune_out = tmp_path / "finetune"                                       # Trainer.push_to_hub via the script
    metrics = _finetune(finetune_out, "--push_to_hub", "--hub_model_id", "org/ep-finetune")
    pretrain_out = tmp_path / "pretrain"                                       # scripts/pretrain_mae.py
    _script("pretrain_mae").main(["--output_dir", str(pretrain_out), "--max_steps", "1", "--report_to", "none",
                                  "--config_overrides", "patch_size=8,hidden_size=32,num_hidden_layers=1,"
                                  "num_attention_heads=2,intermediate_size=64,decoder_hidden_size=32,"
                                  "decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=64",
                                  "--per_device_batch_size", "16", "--shuffle_buffer", "64",
                                  "--num_reconstructions", "2", "--push_to_hub", "--hub_model_id", "org/ep-pretrain"])

    same = {}
    for name in ("ep-method", "ep-save", "ep-lib", "ep-script"):
        files = _check_published(hub.repos[f"org/{name}"], pipeline_tag="image-classification")
        same[name] = {k: v for k, v in files.items() if k != "README.md"}
        card = files["README.md"].decode().replace(f"org/{name}", "REPO").replace(name, "REPO")
        same[name]["README.md"] = card.encode()
    assert all(same[name] == same["ep-method"] for name in same), "the four paths published different repositories"
    _check_published(hub.repos["org/ep-mae"], pipeline_tag="image-feature-extraction")

    # the fine-tuning run: pushed after evaluation, with its results files and our card
    files = _check_published(hub.repos["org/ep-finetune"], pipeline_tag="image-classification")
    assert {"all_results.json", "eval_results.json", "run_args.json"} <= set(files)
    assert not any(name in files for name in ("training_args.bin", "trainer_state.json", "optimizer.pt"))
    pushed_results = json.loads(files["all_results.json"])
    assert pushed_results["eval_top1_accuracy"] == metrics["eval_top1_accuracy"]
    card = huggingface_hub.ModelCard(files["README.md"].decode())
    assert card.data.eval_results is None and card.data.datasets is None  # local data: no Hub dataset id
    assert "sklearn.datasets.load_digits" in card.text and "train_loss" in card.text
    assert f"| top1_accuracy | {metrics['eval_top1_accuracy']:.6g} |" in card.text
    files = _check_published(hub.repos["org/ep-pretrain"], pipeline_tag="image-feature-extraction")
    assert {"all_results.json", "reconstructions.png"} <= set(files)
    assert huggingface_hub.ModelCard(files["README.md"].decode()).data.eval_results is None  # train loss only

    # a stranger without hf_vision loads each by repo id and gets the same outputs; the cards' snippets run
    pixels = _pixels()
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(5))
    torch.save({"pixels": pixels, "noise": noise}, tmp_path / "inputs.pt")
    snippets = {name: _card_snippet(hub.repos[f"org/{name}"].resolve("main").files["README.md"].decode())
                for name in ("ep-method", "ep-mae", "ep-finetune")}
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    out = _run_python(f"""
        import contextlib, io, json, torch
        from transformers import AutoModel, AutoModelForImageClassification, AutoModelForPreTraining
        inputs = torch.load({str(tmp_path / 'inputs.pt')!r})
        x, noise = inputs["pixels"], inputs["noise"]
        out = {{}}
        with torch.no_grad():
            for name in ("ep-method", "ep-save", "ep-lib", "ep-script", "ep-finetune"):
                model = AutoModelForImageClassification.from_pretrained("org/" + name, trust_remote_code=True)
                out[name] = model.eval()(x).logits.tolist()
                out[name + ":module"] = type(model).__module__
                if name == "ep-method":  # re-published from remote code, without hf_vision: still one commit
                    model.push_to_hub("org/ep-stranger", token={TOKEN!r})
            out["ep-mae"] = AutoModel.from_pretrained("org/ep-mae", trust_remote_code=True).eval()(x).last_hidden_state.tolist()
            pretrain = AutoModelForPreTraining.from_pretrained("org/ep-pretrain", trust_remote_code=True).eval()
            out["ep-pretrain"] = pretrain(x, noise=noise).logits.tolist()
        for name, snippet in {snippets!r}.items():
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(snippet, {{}})
            out[name + ":snippet"] = printed.getvalue()
        print(json.dumps(out))
    """, cwd=workdir, env=_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="0"),
        isolated=True)
    finetuned = hf_vision.from_pretrained(finetune_out).eval()
    pretrained = hf_vision.from_pretrained(pretrain_out).eval()
    with torch.no_grad():
        expected = {"ep-method": model(pixels).logits, "ep-finetune": finetuned(pixels).logits,
                    "ep-mae": mae.vit(pixels).last_hidden_state, "ep-pretrain": pretrained(pixels, noise=noise).logits}
    for name in ("ep-save", "ep-lib", "ep-script"):
        expected[name] = expected["ep-method"]
    for name, value in expected.items():
        torch.testing.assert_close(torch.tensor(out[name]), value, atol=1e-5, rtol=1e-5, msg=name)
    assert all(out[f"{n}:module"].startswith("transformers_modules") for n in ("ep-method", "ep-finetune"))
    assert out["ep-method:snippet"].startswith("{'label': ") and "'score': " in out["ep-method:snippet"]
    assert out["ep-finetune:snippet"].startswith("{'label': ")
    assert out["ep-mae:snippet"].split() == ["17", "32"]  # class token + 16 patches, width 32
    stranger = hub.repos["org/ep-stranger"].history("main")
    assert len(stranger) == 2 and set(same["ep-method"]) <= set(stranger[0].files)  # complete, one commit


def test_trainer_generic_card_is_replaced_and_leftovers_stay_home(hub, tmp_path):
    """A folder holding the Trainer's generic card gets ours on upload; ours is kept as it is."""
    _tiny_classifier().save_pretrained(tmp_path)
    (tmp_path / "README.md").write_text("---\ntags:\n- generated_from_trainer\n---\n# model\n")
    push_folder(tmp_path, "org/generic", token=TOKEN)
    card = huggingface_hub.ModelCard(hub.repos["org/generic"].resolve("main").files["README.md"].decode())
    assert "hf-vision" in card.data.tags and "generated_from_trainer" not in card.data.tags


def test_pipeline_accuracy_on_the_saved_model_equals_finetune_eval_accuracy(tmp_path):
    """The saved image processor repeats the evaluation transform (resize by 1/crop_pct, centre crop, mean/std)."""
    import io as _io

    from PIL import Image
    from transformers import pipeline

    from hf_vision.data.sources import load_image_source

    out = tmp_path / "run"
    metrics = _finetune(out, "--eval_crop_pct", "0.8")
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["crop_size"] == {"height": 32, "width": 32} and processor["size"] == {"shortest_edge": 40}
    source = load_image_source("digits", "test")
    examples = list(source.dataset.take(64))
    images = [Image.open(_io.BytesIO(e[source.image_column]["bytes"])) for e in examples]
    labels = [e[source.label_column] for e in examples]
    classify = pipeline("image-classification", model=str(out))
    predictions = [p[0]["label"] for p in classify(images, top_k=1)]
    names = source.class_names
    accuracy = sum(pred == names[label] for pred, label in zip(predictions, labels)) / len(labels)
    assert accuracy == metrics["eval_top1_accuracy"]


def test_processor_carries_crop_interpolation_and_normalisation(tmp_path):
    model = _tiny_classifier(image_mean=(0.1, 0.2, 0.3), image_std=(0.4, 0.5, 0.6))
    model.config.crop_pct, model.config.interpolation = 0.9, "bilinear"
    model.save_pretrained(tmp_path)
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    assert type(processor).__name__ == "BitImageProcessor" and processor.do_center_crop
    assert processor.resample == 2 and list(processor.image_mean) == [0.1, 0.2, 0.3]
    from hf_vision.data.transforms import PreprocessSpec

    spec = PreprocessSpec.from_processor(processor)
    assert spec.size == (32, 32) and spec.resample == 2 and math.floor(32 / spec.crop_pct + 1e-6) == 35
    model.config.interpolation = "lanczos"
    with pytest.raises(ValueError, match="interpolation"):
        model.image_processor()


def test_mae_feature_extraction_is_deterministic_whole_image_in_image_order(tmp_path):
    from PIL import Image
    from transformers import pipeline

    torch.manual_seed(0)
    hf_vision.MAEForPreTraining(tiny_mae()).save_pretrained(tmp_path)
    encoder = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert type(encoder) is hf_vision.MAEModel
    extract = pipeline("image-feature-extraction", model=str(tmp_path))
    image = Image.fromarray(torch.randint(0, 256, (40, 40, 3), generator=torch.Generator().manual_seed(1),
                                          dtype=torch.uint8).numpy())
    first, second = torch.tensor(extract(image)), torch.tensor(extract(image))
    assert torch.equal(first, second) and first.shape == (1, 17, 32)  # class token + all 16 patches
    # a manual forward that keeps every patch: noise ranking the patches in image order, nothing removed
    pixels = extract.image_processor(image, return_tensors="pt")["pixel_values"]
    order = torch.arange(16, dtype=torch.float32).expand(1, -1)
    unmasked = hf_vision.MAEModel(tiny_mae(mask_ratio=0.0)).eval()
    unmasked.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(first, unmasked(pixels, order).last_hidden_state, atol=1e-5, rtol=1e-5)
        # pre-training still masks by default, in evaluation mode too; training-mode encoding masks
        pretraining = hf_vision.MAEForPreTraining.from_pretrained(tmp_path).eval()
        assert pretraining(pixels).mask.sum() == 12
        assert encoder.train()(pixels).last_hidden_state.shape[1] == 5


def test_card_vocabulary_agrees_with_the_libraries():
    """The pipeline tags our cards emit are Hub vision pipeline tags and transformers pipeline tasks
    (huggingface_hub ships no list of pipeline tags to compare with); the transformers floor is the declared one."""
    from importlib import metadata

    from transformers.pipelines import SUPPORTED_TASKS

    from hf_vision.model_card import CARD_TASKS, HUB_VISION_PIPELINES, min_transformers_version

    assert set(CARD_TASKS) <= HUB_VISION_PIPELINES and set(CARD_TASKS) <= set(SUPPORTED_TASKS)
    declared = [r for r in metadata.requires("hf-vision") if r.startswith("transformers")]
    assert declared and f">={min_transformers_version()}" in declared[0]
    card = card_for_model(_tiny_classifier(), repo_id="org/x")
    assert f"transformers>={min_transformers_version()}" in card.text


def test_converted_models_carry_the_source_preprocessing(tmp_path):
    """timm's pretrained_cfg and a transformers checkpoint's processor reach our saved processor."""
    source = _tiny_timm_vit()
    source.pretrained_cfg = {**source.pretrained_cfg, "crop_pct": 0.9, "interpolation": "bilinear",
                             "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)}
    convert.from_timm(source).save_pretrained(tmp_path / "from-timm")
    processor = json.loads((tmp_path / "from-timm" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"shortest_edge": 35} and processor["crop_size"] == {"height": 32, "width": 32}
    assert processor["resample"] == 2 and processor["image_mean"] == [0.1, 0.2, 0.3]
    assert processor["image_std"] == [0.4, 0.5, 0.6] and processor["do_center_crop"]

    # transformers' ViT processor resizes straight to the model size (bilinear, mean/std 0.5): so does ours
    source = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=5)).eval()
    source.save_pretrained(tmp_path / "hf-vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "hf-vit")
    hf_vision.from_pretrained(str(tmp_path / "hf-vit")).save_pretrained(tmp_path / "from-hf")
    theirs = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf-vit")
    ours = transformers.AutoImageProcessor.from_pretrained(tmp_path / "from-hf")
    from PIL import Image

    image = Image.fromarray(torch.randint(0, 256, (40, 56, 3), generator=torch.Generator().manual_seed(2),
                                          dtype=torch.uint8).numpy())
    torch.testing.assert_close(ours(image, return_tensors="pt")["pixel_values"],
                               theirs(image, return_tensors="pt")["pixel_values"], atol=1e-6, rtol=0)
