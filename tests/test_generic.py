"""What every model class must do, run on a tiny configuration of each (see cases.py)."""
from __future__ import annotations

import pytest
import torch
import transformers

from .cases import CASES, Case


def _build(case: Case, **overrides):
    torch.manual_seed(0)
    return case.model_cls(case.make_config(**overrides))


def _inputs(case: Case, config, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    inputs = {"pixel_values": torch.randn(batch, config.num_channels, *case.image_size, generator=gen)}
    inputs.update(case.make_inputs(config, batch, gen))
    if case.labels:
        inputs["labels"] = torch.randint(0, config.num_labels, (batch,), generator=gen)
    return inputs


def _batched_tensors(output, batch: int) -> dict[str, torch.Tensor]:
    """Every batch-first tensor of an output; tuples of tensors (a backbone's feature_maps) count per element."""
    flat = {}
    for k, v in output.items():
        if isinstance(v, (tuple, list)):
            flat.update({f"{k}.{i}": t for i, t in enumerate(v) if isinstance(t, torch.Tensor)})
        else:
            flat[k] = v
    return {k: v for k, v in flat.items() if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == batch}


def _assert_outputs_close(a, b, batch: int, atol: float = 1e-5) -> None:
    ta, tb = _batched_tensors(a, batch), _batched_tensors(b, batch)
    assert ta.keys() == tb.keys() and ta
    for key in ta:
        torch.testing.assert_close(ta[key], tb[key], atol=atol, rtol=atol, msg=lambda m: f"{key}: {m}")


ids = [c.id for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_forward_shapes(case):
    model = _build(case).eval()
    inputs = _inputs(case, model.config, batch=2)
    out = model(**inputs)
    assert isinstance(out, transformers.utils.ModelOutput)
    for key, shape in case.expected_shapes(model.config, 2).items():
        if isinstance(out[key], (tuple, list)):  # e.g. feature_maps: expected is one shape per element
            assert tuple(tuple(t.shape) for t in out[key]) == shape, key
            assert all(torch.isfinite(t).all() for t in out[key]), key
            continue
        assert tuple(out[key].shape) == shape, key
        assert torch.isfinite(out[key]).all(), key
    if case.labels:
        assert out.loss is not None and out.loss.ndim == 0


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_hidden_states_and_attentions(case):
    model = _build(case).eval()
    out = model(**_inputs(case, model.config, batch=2), output_hidden_states=True, output_attentions=True)
    assert out.hidden_states and all(h.shape[0] == 2 for h in out.hidden_states)
    assert out.attentions and all(a is not None for a in out.attentions)
    for attn in out.attentions:  # real probabilities, also under the default sdpa implementation
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_backward_reaches_every_parameter(case):
    model = _build(case).train()
    out = model(**_inputs(case, model.config, batch=2))
    scalar = sum(t.float().pow(2).mean() for t in _batched_tensors(out, 2).values())
    if getattr(out, "loss", None) is not None:
        scalar = scalar + out.loss
    scalar.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.isfinite().all())]
    assert not missing, f"no finite gradient for {missing}"


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_save_load_and_auto(case, tmp_path):
    model = _build(case).eval()
    inputs = _inputs(case, model.config)
    expected = model(**inputs)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "preprocessor_config.json").exists()
    reloaded = case.model_cls.from_pretrained(tmp_path).eval()
    _assert_outputs_close(reloaded(**inputs), expected, 3, atol=0)
    auto_model = getattr(transformers, case.auto_class).from_pretrained(tmp_path).eval()
    assert type(auto_model) is case.model_cls
    _assert_outputs_close(auto_model(**inputs), expected, 3, atol=0)
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(config) is type(model.config)
    assert case.auto_class in config.auto_map and "AutoConfig" in config.auto_map
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    assert list(processor.image_mean) == list(model.config.image_mean)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_eager_matches_sdpa(case):
    model = _build(case).eval()
    inputs = _inputs(case, model.config)
    model.set_attn_implementation("sdpa")
    sdpa = model(**inputs)
    model.set_attn_implementation("eager")
    eager = model(**inputs)
    _assert_outputs_close(eager, sdpa, 3, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_gradient_checkpointing_parity(case):
    inputs = None
    grads = []
    for checkpointing in (False, True):
        model = _build(case).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.is_activation_checkpointing
        inputs = inputs or _inputs(case, model.config, batch=2)
        out = model(**inputs)
        scalar = sum(t.float().pow(2).mean() for t in _batched_tensors(out, 2).values())
        (scalar + (out.loss if getattr(out, "loss", None) is not None else 0)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_batch_independence_and_determinism(case):
    model = _build(case).eval()
    inputs = _inputs(case, model.config, batch=3)
    inputs.pop("labels", None)
    full = model(**inputs)
    _assert_outputs_close(model(**inputs), full, 3, atol=0)  # deterministic in eval
    for i in range(3):
        single = model(**{k: v[i : i + 1] for k, v in inputs.items()})
        one = {k: v[i : i + 1] for k, v in _batched_tensors(full, 3).items()}
        for key, value in _batched_tensors(single, 1).items():
            torch.testing.assert_close(value, one[key], atol=1e-5, rtol=1e-4, msg=lambda m: f"{key}[{i}]: {m}")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_fresh_init_is_sane(case):
    """No learned or fixed embedding left at zero by accident; no NaN anywhere."""
    model = _build(case)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        assert torch.isfinite(tensor).all(), name
        if any(key in name for key in ("position_embeddings", "cls_token", "mask_token", "pos_embed")):
            assert tensor.abs().sum() > 0, f"{name} is all zeros in a fresh model"


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_onednn_linear_matches_f_linear(case, monkeypatch):
    """`optimize_for_cpu` puts every Linear of the model on oneDNN: same outputs and gradients as the plain model
    (F.linear), and the profiler sees oneDNN's kernel run for each product. Tiny configs fall under the layer's
    size cut, so here every Linear is forced onto the 16-image layout (a batch of 16 divides)."""
    from torch.profiler import ProfilerActivity, profile

    from hf_vision import optimize_for_cpu
    from hf_vision.optimize import onednn_linear as linear_module

    sent = []

    def images(rows: int, features: int) -> int | None:
        n = linear_module._split(rows)
        sent.append(n) if n else None
        return n

    monkeypatch.setattr(linear_module, "MIN_ROWS_PER_IMAGE", 1)
    monkeypatch.setattr(linear_module, "_images", images)
    monkeypatch.setattr(linear_module, "MEASURE", False)  # oneDNN wherever it applies, whatever this CPU prefers

    def run(optimize: bool):
        sent.clear()
        model = _build(case).train()
        if optimize:
            assert optimize_for_cpu(model) is model
        torch.manual_seed(1)  # same dropout / drop-path draws in both runs
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = model(**_inputs(case, model.config, batch=16))
            scalar = sum(t.float().pow(2).mean() for t in _batched_tensors(out, 16).values())
            if getattr(out, "loss", None) is not None:
                scalar = scalar + out.loss
            scalar.backward()
        convs = sum(e.count for e in prof.key_averages() if e.key == "aten::mkldnn_convolution")
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return out, grads, convs, len(sent)

    linear_module._split.cache_clear()
    try:
        ref, ref_grads, ref_convs, ref_sent = run(False)
        got, got_grads, got_convs, got_sent = run(True)
    finally:
        linear_module._split.cache_clear()
    assert ref_sent == 0 and got_sent > 0
    assert got_convs == ref_convs + got_sent  # each product sent to a convolution ran on oneDNN's kernel
    _assert_outputs_close(got, ref, 16, atol=1e-4)
    assert got_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(got_grads[name], ref_grads[name], atol=1e-4, rtol=1e-3,
                                   msg=lambda m: f"{name}: {m}")


# ------------------------------------------------------------------------------------------------ standard tools
# Every model class must work with the tools users combine models with. Each tool runs on the first case of each
# model class (PER_CLASS: tracing and export cost seconds per case), and
# inductor (C++ compilation, slow on a small CPU) only on one class per family: the others compile with
# `backend="aot_eager"`, the same fullgraph dynamo capture and autograd tracing without code generation.
def _one_per(key) -> list[Case]:
    seen, picked = set(), []
    for case in CASES:
        if key(case) not in seen:
            seen.add(key(case))
            picked.append(case)
    return picked


PER_CLASS = _one_per(lambda c: c.model_cls)
INDUCTOR = {c.id for c in _one_per(lambda c: c.id.split("-")[0])}  # vit-model, hybrid-model, mae-model, swin-model


def _tensors(output) -> list[torch.Tensor]:
    """The output's tensors in field order (a tuple field such as feature_maps counts per element)."""
    flat = []
    for value in output.values() if isinstance(output, dict) else output:
        flat.extend(value if isinstance(value, (tuple, list)) else [value])
    return [t for t in flat if isinstance(t, torch.Tensor)]


def _assert_tensors_close(got: list[torch.Tensor], want: list[torch.Tensor], atol: float, rtol: float) -> None:
    assert len(got) == len(want) and want
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype, f"output {i}: {g.dtype} != {w.dtype}"
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m: f"output {i}: {m}")


def _traced_leftovers(model: torch.nn.Module) -> list[str]:
    """Names of tensors held by the model (attributes, dicts, plain objects such as Swin's WindowCache) that are
    not plain eager tensors: what a trace that stores on the module leaves behind."""
    found = []

    def visit(name: str, value, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            if type(value) not in (torch.Tensor, torch.nn.Parameter):
                found.append(f"{name}: {type(value).__name__}")
        elif isinstance(value, dict) and depth < 3:
            for k, v in value.items():
                visit(f"{name}[{k!r}]", v, depth + 1)
        elif isinstance(value, (list, tuple)) and depth < 3:
            for i, v in enumerate(value):
                visit(f"{name}[{i}]", v, depth + 1)
        elif hasattr(value, "__dict__") and not isinstance(value, (torch.nn.Module, type)) and depth < 3:
            visit(name, vars(value), depth + 1)

    for module_name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr not in ("_modules", "_parameters", "_buffers"):
                visit(f"{module_name}.{attr}", value, 0)
        for buffer_name, buffer in module.named_buffers(recurse=False):
            visit(f"{module_name}.{buffer_name}", buffer, 0)
    return found


def _training_scalar(out, batch: int) -> torch.Tensor:
    scalar = sum(t.float().pow(2).mean() for t in _batched_tensors(out, batch).values())
    return scalar + out.loss if getattr(out, "loss", None) is not None else scalar


@pytest.mark.parametrize("case", PER_CLASS, ids=[c.id for c in PER_CLASS])
def test_torch_compile_fullgraph_matches_eager(case):
    import copy

    torch.compiler.reset()
    backend = "inductor" if case.id in INDUCTOR else "aot_eager"
    # inductor fuses and reorders float sums; aot_eager runs the same kernels as eager
    atol, rtol = (1e-5, 1e-4) if backend == "inductor" else (1e-6, 1e-6)
    eager = _build(case).train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend=backend)
    inputs = _inputs(case, eager.config, batch=2)
    results = []
    for run, model in ((eager, eager), (compiled, compiled_model)):
        torch.manual_seed(1)  # same dropout / drop-path draws
        out = run(**inputs)
        _training_scalar(out, 2).backward()
        results.append((_tensors(out), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (want, want_grads), (got, got_grads) = results
    _assert_tensors_close([t.detach() for t in got], [t.detach() for t in want], atol, rtol)
    assert got_grads.keys() == want_grads.keys() and want_grads
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")

    eager.eval(), compiled_model.eval()
    inputs = _inputs(case, eager.config, batch=3, seed=1)
    inputs.pop("labels", None)
    with torch.no_grad():
        _assert_tensors_close(_tensors(compiled(**inputs)), _tensors(eager(**inputs)), atol, rtol)


def _export_inputs(case: Case, config, batch: int, seed: int, size: tuple[int, int] | None = None):
    inputs = _inputs(case, config, batch=batch, seed=seed)
    inputs.pop("labels", None)
    if size is not None:
        inputs["pixel_values"] = torch.randn(batch, config.num_channels, *size,
                                             generator=torch.Generator().manual_seed(seed))
    return inputs


@pytest.mark.parametrize("case", PER_CLASS, ids=[c.id for c in PER_CLASS])
def test_torch_export_static_and_dynamic(case):
    """Static export, then dynamic in the batch (SwinModel also in height and width: multiples of 32 = patch 4 *
    2**(stages-1) * window 2, from 64 up, where every stage has shifted windows); the programs match eager on new
    shapes, and the eager model is unchanged afterwards. (Dynamic height/width costs ~20 s of tracing on this
    CPU, so the two other Swin classes, which run the same stages, export dynamic in the batch only.)"""
    model = _build(case).eval()
    inputs = _export_inputs(case, model.config, 2, 0)
    with torch.no_grad():
        before = _tensors(model(**inputs))

    program = torch.export.export(model, (), kwargs=inputs)
    _assert_tensors_close(_tensors(program.module()(**inputs)), before, 1e-5, 1e-5)

    batch = torch.export.Dim("batch", min=1, max=64)
    dynamic = {name: {0: batch} for name in inputs}
    sizes = [None]
    if case.id == "swin-model":
        dynamic["pixel_values"].update({2: 32 * torch.export.Dim("h", min=2, max=8),
                                        3: 32 * torch.export.Dim("w", min=2, max=8)})
        inputs = _export_inputs(case, model.config, 2, 0, size=(64, 96))
        sizes = [(64, 64), (128, 96)]
    program = torch.export.export(model, (), kwargs=inputs, dynamic_shapes=dynamic)
    for new_batch, size in zip((3, 5), sizes * 2):
        new = _export_inputs(case, model.config, new_batch, 1, size=size)
        with torch.no_grad():
            want = _tensors(model(**new))
        _assert_tensors_close(_tensors(program.module()(**new)), want, 1e-5, 1e-5)

    assert not _traced_leftovers(model), _traced_leftovers(model)
    with torch.no_grad():
        after = _tensors(model(**_export_inputs(case, model.config, 2, 0)))
    assert all(type(t) is torch.Tensor for t in after)
    _assert_tensors_close(after, before, 0, 0)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_optimize_for_cpu_changes_no_result_state_or_file(case, tmp_path):
    """The opt-in keeps outputs (no_grad, where residuals go in place) and gradients to 1e-5, the state dict
    (same keys, same tensors), `save_pretrained`'s files byte for byte, and its undo restores the exact plain
    types (so e.g. quantize_dynamic({nn.Linear}) finds every Linear again)."""
    from torch import nn

    from hf_vision import optimize_for_cpu
    from hf_vision.modeling.layers.block import Block

    model = _build(case).eval()
    plain_types = {name: type(m) for name, m in model.named_modules()}
    inputs = _inputs(case, model.config)
    with torch.no_grad():
        ref = model(**inputs)
    ref_out = model(**inputs)
    ref_loss = sum(t.float().pow(2).mean() for t in _batched_tensors(ref_out, 3).values())
    ref_grads = torch.autograd.grad(ref_loss, list(model.parameters()), allow_unused=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "plain")

    optimize_for_cpu(model)
    swapped = [name for name, m in model.named_modules() if type(m) is not plain_types[name]]
    assert swapped and all(plain_types[n] in (nn.Linear, Block) for n in swapped)
    assert not any(type(m) is nn.Linear for m in model.modules())
    with torch.no_grad():
        got = model(**inputs)
    _assert_outputs_close(got, ref, 3)
    got_out = model(**inputs)
    got_loss = sum(t.float().pow(2).mean() for t in _batched_tensors(got_out, 3).values())
    got_grads = torch.autograd.grad(got_loss, list(model.parameters()), allow_unused=True)
    for (name, _), g, r in zip(model.named_parameters(), got_grads, ref_grads):
        assert (g is None) == (r is None), name
        if g is not None:
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")
    assert list(model.state_dict()) == list(state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    model.save_pretrained(tmp_path / "optimized")
    plain_files = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert plain_files == sorted(p.name for p in (tmp_path / "optimized").iterdir())
    for name in plain_files:
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "optimized" / name).read_bytes(), name

    assert optimize_for_cpu(model, enable=False) is model
    assert {name: type(m) for name, m in model.named_modules()} == plain_types


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_only_working_attention_implementations_are_advertised(case, tmp_path):
    """eager and sdpa load and agree; flash/flex (whose paths our attention does not implement) are refused at
    load time with transformers' error instead of failing inside the first forward."""
    model = _build(case).eval()
    model.save_pretrained(tmp_path)
    assert not model._supports_flash_attn and not model._supports_flex_attn
    assert not model._supports_attention_backend
    inputs = _inputs(case, model.config, batch=2)
    outs = {}
    for impl in ("eager", "sdpa"):
        loaded = case.model_cls.from_pretrained(tmp_path, attn_implementation=impl).eval()
        assert loaded.config._attn_implementation == impl
        with torch.no_grad():
            outs[impl] = loaded(**inputs)
    _assert_outputs_close(outs["eager"], outs["sdpa"], 2)
    for impl in ("flash_attention_2", "flash_attention_3", "flex_attention"):
        with pytest.raises(ValueError, match="does not support"):
            case.model_cls.from_pretrained(tmp_path, attn_implementation=impl)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_config_return_dict_false_gives_tuples(case):
    """As in transformers: `config.return_dict = False` makes forward return the output's tuple; an explicit
    `return_dict=` argument wins over the config."""
    model = _build(case).eval()
    inputs = _inputs(case, model.config, batch=2)
    with torch.no_grad():
        ref = model(**inputs)
        model.config.return_dict = False
        got = model(**inputs)
        explicit = model(**inputs, return_dict=True)
        model.config.return_dict = True
        forced = model(**inputs, return_dict=False)
    assert isinstance(ref, transformers.utils.ModelOutput) and isinstance(explicit, transformers.utils.ModelOutput)
    for out in (got, forced):
        assert type(out) is tuple and len(out) == len(ref.to_tuple())
        for a, b in zip(out, ref.to_tuple()):
            if isinstance(a, torch.Tensor):
                torch.testing.assert_close(a, b)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_input_embeddings_and_adapter_style_training_with_reentrant_checkpointing(case):
    """get_input_embeddings() is the patch embedding; with everything frozen but the attention projections (what
    LoRA trains) and reentrant gradient checkpointing, enable_input_require_grads() makes those train."""
    model = _build(case).train()
    embed = model.get_input_embeddings()
    assert embed is model.base_model.get_input_embeddings()
    assert any(embed is m for name, m in model.named_modules() if name.endswith("patch_embed"))
    trainable = {name for name, p in model.named_parameters() if ".attn." in name}
    assert trainable
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    model.enable_input_require_grads()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    out = model(**_inputs(case, model.config, batch=2))
    scalar = sum(t.float().pow(2).mean() for t in _batched_tensors(out, 2).values() if t.requires_grad)
    scalar.backward()
    missing = sorted(n for n, p in model.named_parameters() if n in trainable and (p.grad is None or not p.grad.any()))
    assert not missing, missing


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_half_precision_loading_and_casting(case, tmp_path):
    """from_pretrained(dtype=bf16 | fp16) and model.to(bf16) run every family (fixed sin-cos tables follow the
    weights' dtype) and stay near the fp32 outputs."""
    model = _build(case).eval()
    model.save_pretrained(tmp_path)
    inputs = _inputs(case, model.config, batch=2)
    with torch.no_grad():
        ref = model(**inputs)
    loaded = [(dtype, case.model_cls.from_pretrained(tmp_path, dtype=dtype).eval())
              for dtype in (torch.bfloat16, torch.float16)]
    loaded.append((torch.bfloat16, model.to(torch.bfloat16)))
    for dtype, half in loaded:
        assert all(p.dtype == dtype for p in half.parameters())
        with torch.no_grad():
            out = half(**{k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()})
        got, want = _batched_tensors(out, 2), _batched_tensors(ref, 2)
        assert got.keys() == want.keys()
        for key in got:
            if want[key].is_floating_point():
                assert got[key].dtype == dtype, key
                torch.testing.assert_close(got[key].float(), want[key], atol=0.15, rtol=0.1,
                                           msg=lambda m: f"{dtype} {key}: {m}")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_returned_hidden_states_and_attentions_get_gradients(case):
    """Gradient-based attribution: retain_grad() on every returned hidden state and attention map, then backward,
    gives each a gradient (they are the tensors the graph used, not views made afterwards)."""
    model = _build(case).eval()
    out = model(**_inputs(case, model.config, batch=2), output_hidden_states=True, output_attentions=True)
    returned = {f"{key}.{i}": t for key in ("hidden_states", "reshaped_hidden_states", "attentions")
                for i, t in enumerate(out.get(key) or ()) if t is not None}
    assert returned
    for t in returned.values():
        t.retain_grad()
    main = out.logits if "logits" in out else (out.feature_maps[-1] if "feature_maps" in out else out[0])
    main.float().pow(2).sum().backward()
    # the last block's attention of a classifier that reads only its class token may be partly unused: any
    # gradient at all counts; a view made after use would have grad None
    missing = sorted(k for k, t in returned.items() if t.grad is None)
    assert not missing, missing


def _plain_inputs(case: Case, config, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    inputs = _inputs(case, config, batch=batch, seed=seed)
    inputs.pop("labels", None)
    return inputs


def _assert_relative_error_below(got: list[torch.Tensor], want: list[torch.Tensor], bound: float) -> None:
    """Quantized outputs against fp32: every float output's error, relative to the output's norm, under `bound`;
    non-float outputs (MAE's ids_restore) exactly equal."""
    assert len(got) == len(want) and want
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"output {i}: {g.shape} != {w.shape}"
        if not w.is_floating_point():
            assert torch.equal(g, w), f"output {i}"
            continue
        err = ((g.float() - w).norm() / w.norm().clamp_min(1e-12)).item()
        assert err < bound, f"output {i}: relative error {err:.4f} >= {bound}"


# int8 error budget. Weights and activations at 8 bits carry ~0.4% relative rounding error each; through the tiny
# models' few layers the outputs move by ~1-3%. A real fault (a Linear left fp32 is harmless, but a wrong scale,
# a transposed or dropped weight, a lost bias, a wrong zero point) moves them by tens of percent or more.
INT8_BOUND = 0.1


@pytest.mark.parametrize("case", PER_CLASS, ids=[c.id for c in PER_CLASS])
def test_onnx_export_runs_in_onnxruntime(case, tmp_path):
    """torch.onnx.export(dynamo=True) of the eval model (MAE with its masking noise as an input), run by
    onnxruntime: every output equals eager to 1e-4."""
    import onnxruntime

    model = _build(case).eval()
    inputs = _plain_inputs(case, model.config, 2)
    with torch.no_grad():
        want = _tensors(model(**inputs))
        program = torch.onnx.export(model, (), kwargs=inputs, dynamo=True)
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert sorted(names) == sorted(inputs), names
    got = session.run(None, {name: inputs[name].numpy() for name in names})
    _assert_tensors_close([torch.from_numpy(g) for g in got], want, 1e-4, 1e-4)


def _count_linears(model: torch.nn.Module) -> int:
    return sum(type(m) is torch.nn.Linear for m in model.modules())


@pytest.mark.parametrize("case", PER_CLASS, ids=[c.id for c in PER_CLASS])
def test_quantize_dynamic_replaces_every_linear(case):
    """quantize_dynamic({nn.Linear}) replaces every nn.Linear with a dynamic int8 Linear and stays within the
    int8 error budget. As the README says, it matches exact types: after optimize_for_cpu it finds nothing,
    after the undo it finds every Linear again."""
    import copy

    from torch.ao.nn.quantized import dynamic as nnqd
    from torch.ao.quantization import quantize_dynamic

    from hf_vision import optimize_for_cpu

    model = _build(case).eval()
    linears = _count_linears(model)
    assert linears
    inputs = _plain_inputs(case, model.config, 2)
    with torch.no_grad():
        want = _tensors(model(**inputs))
    quantized = quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    assert sum(type(m) is nnqd.Linear for m in quantized.modules()) == linears
    assert _count_linears(quantized) == 0
    with torch.no_grad():
        _assert_relative_error_below(_tensors(quantized(**inputs)), want, INT8_BOUND)

    optimized = optimize_for_cpu(copy.deepcopy(model))
    untouched = quantize_dynamic(optimized, {torch.nn.Linear}, dtype=torch.qint8)
    assert not any(isinstance(m, nnqd.Linear) for m in untouched.modules())
    restored = quantize_dynamic(optimize_for_cpu(optimized, enable=False), {torch.nn.Linear}, dtype=torch.qint8)
    assert sum(type(m) is nnqd.Linear for m in restored.modules()) == linears


@pytest.mark.parametrize("case", PER_CLASS, ids=[c.id for c in PER_CLASS])
def test_torchao_int8_at_batch_32(case):
    """torchao's int8 weight-only and dynamic-activation int8 quantize_ at batch 32 (the size where the old 1x1
    convolution path raised NotImplementedError): every Linear's weight is quantized and outputs stay within the
    int8 error budget; after optimize_for_cpu and its undo (the documented order) too."""
    import copy

    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    from hf_vision import optimize_for_cpu

    model = _build(case).eval()
    linears = _count_linears(model)
    inputs = _plain_inputs(case, model.config, 32)
    with torch.no_grad():
        want = _tensors(model(**inputs))
    for config in (Int8WeightOnlyConfig(), Int8DynamicActivationInt8WeightConfig()):
        quantized = copy.deepcopy(model)
        quantize_(quantized, config)
        weights = [m.weight for m in quantized.modules() if isinstance(m, torch.nn.Linear)]
        assert len(weights) == linears
        assert all(type(w) not in (torch.Tensor, torch.nn.Parameter) for w in weights), type(config).__name__
        with torch.no_grad():
            _assert_relative_error_below(_tensors(quantized(**inputs)), want, INT8_BOUND)

    # The README's order: quantize the plain model. torchao's default filter also takes optimize_for_cpu's oneDNN
    # Linear (an nn.Linear subclass) and swaps its weight, which that module's oneDNN path cannot run on
    # (NotImplementedError where it takes that path, e.g. vit-cls at batch 32); undone first, it quantizes fine.
    optimized = optimize_for_cpu(copy.deepcopy(model))
    quantized = optimize_for_cpu(optimized, enable=False)
    quantize_(quantized, Int8WeightOnlyConfig())
    with torch.no_grad():
        _assert_relative_error_below(_tensors(quantized(**inputs)), want, INT8_BOUND)


@pytest.mark.parametrize("case", PER_CLASS, ids=[c.id for c in PER_CLASS])
def test_peft_lora_train_save_reload_merge(case, tmp_path):
    """PEFT LoRA on every attention projection (plus modules_to_save=["classifier"] for classifiers): only LoRA
    and classifier weights train, 3 SGD steps change the loss, the saved adapter reloads onto a fresh base with
    equal outputs, merge_and_unload gives plain nn.Linear modules with equal outputs, and the merged model's
    save_pretrained reloads through our from_pretrained unchanged."""
    from peft import LoraConfig, PeftModel, get_peft_model

    base = _build(case)
    classifier = hasattr(base, "classifier")
    targets = [n for n, _ in base.named_modules() if n.endswith((".attn.qkv", ".attn.proj"))]
    assert targets
    config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*\.attn\.(qkv|proj)",
                        modules_to_save=["classifier"] if classifier else None)
    model = get_peft_model(base, config)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or (classifier and ".classifier.modules_to_save." in n) for n in trainable), trainable
    assert sum(".lora_A." in n for n in trainable) == len(targets)
    assert not classifier or any(".classifier.modules_to_save." in n for n in trainable)

    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    inputs = _inputs(case, base.config, batch=2)
    losses = []
    for _ in range(3):
        out = model(**inputs)  # only outputs on the graph: MAE's constant mask/ids_restore would swamp the change
        loss = sum(t.float().pow(2).mean() for t in _batched_tensors(out, 2).values() if t.requires_grad)
        loss = loss + out.loss if getattr(out, "loss", None) is not None else loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] != losses[0], losses

    model.eval()
    inputs = _plain_inputs(case, base.config, 2, seed=1)
    with torch.no_grad():
        want = _tensors(model(**inputs))
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(_build(case), tmp_path / "adapter").eval()
    with torch.no_grad():
        _assert_tensors_close(_tensors(reloaded(**inputs)), want, 1e-6, 1e-6)

    merged = reloaded.merge_and_unload()
    assert all(type(merged.get_submodule(n)) is torch.nn.Linear for n in targets)
    assert not any("lora" in n for n, _ in merged.named_modules())
    with torch.no_grad():
        merged_out = _tensors(merged(**inputs))
    _assert_tensors_close(merged_out, want, 1e-5, 1e-5)
    merged.save_pretrained(tmp_path / "merged")
    loaded = case.model_cls.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        _assert_tensors_close(_tensors(loaded(**inputs)), merged_out, 0, 0)
