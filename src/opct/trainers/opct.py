"""On-policy consistency training (OPCT).

Each step the student samples its own answers to the *wrapped* prompt; the teacher (the
initial weights: the same model with its LoRA adapter disabled) scores those very tokens under
the *clean* conversation; the loss is the per-token reverse KL between them.

With ``rollouts="teacher"`` the tokens are instead the teacher's own answer to the clean prompt
(off-policy): with the forward KL (``loss_type="jsd"``, ``beta=0``) that is soft-label BCT.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from opct import losses
from opct.chat import left_pad, pad_id, position_ids_from_mask, render_prompt, right_pad
from opct.data.schema import pair_from_row
from opct.generation import SamplingCopy, autocast_context, eos_ids, generate_ids, seeded_rng
from opct.models import attention_kernel
from opct.precision import use_bf16
from opct.prefix import PrefixCache, detached_kv, shared_prefix_logits, student_heads
from opct.trainers.base import ConsistencyArguments, Stopwatch, WindowTrainer, cut_left, prepare_model

# The per-token losses by name: (student logits, teacher logits, sampled tokens, mask, token count,
# temperature, config) -> (loss, stats). A new loss is a pure function in `opct.losses` and a line here.
TOKEN_LOSSES = {
    "sampled": lambda s, t, tokens, mask, n, temp, args: losses.sampled_reverse_kl_loss(
        losses.token_logprobs(s, tokens, temp), losses.token_logprobs(t, tokens, temp), mask, n),
    "full": lambda s, t, tokens, mask, n, temp, args: losses.full_reverse_kl_loss(s, t, mask, n, temp),
    "topk": lambda s, t, tokens, mask, n, temp, args: losses.topk_reverse_kl_loss(s, t, mask, args.top_k_tokens, n,
                                                                                  temp),
    "jsd": lambda s, t, tokens, mask, n, temp, args: losses.generalized_jsd_loss(s, t, mask, args.beta, n, temp),
}
LOSSES = (*TOKEN_LOSSES, "letter")  # letter: the answer-letter KL, read after each response (`letter_logits`)
TEACHERS = ("base", "live", "ema")
ROLLOUTS = ("student", "teacher")


@dataclass
class OPCTConfig(ConsistencyArguments):
    """Configuration of `OPCTTrainer` (every `TrainingArguments` field applies too)."""

    output_dir: str = field(default="runs/opct", metadata={"help": "Run directory."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (reference: 1e-5 sycophancy, 5e-6 jailbreaks)."})
    num_samples: int = field(default=2, metadata={"help": "Completions sampled per wrapped prompt (k)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; scoring uses the same one (0 = greedy, scored at 1)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold."})
    max_new_tokens: int = field(default=128, metadata={"help": "Longest sampled completion."})
    loss_type: str = field(
        default="sampled",
        metadata={"help": "sampled: reverse-KL policy gradient on the sampled tokens; full: exact full-vocabulary reverse KL; "
                  "topk: reverse KL over the student's top-k tokens; jsd: generalized JSD (beta); letter: multiple-choice "
                  "pairs, the reverse KL between the answer-letter distributions read after each response plus "
                  "answer_prefix, under the wrapped and the clean prompt, spread over the response as a "
                  "policy-gradient advantage (the reference's sycophancy recipe)."},
    )
    answer_prefix: str = field(default="#### ", metadata={"help": "loss_type=letter: text appended to each response before the letter is read."})
    answer_letters: str = field(default="ABCD", metadata={"help": "loss_type=letter: the option letters."})
    top_k_tokens: int = field(default=64, metadata={"help": "k for loss_type=topk."})
    beta: float = field(default=0.5, metadata={"help": "Generalized-JSD mixture weight for loss_type=jsd."})
    teacher: str = field(
        default="base",
        metadata={"help": "base: initial weights (adapter off); live: the current student under the clean prompt; "
                  "ema: an exponential moving average of the adapter."},
    )
    ema_decay: float = field(default=0.99, metadata={"help": "EMA decay for teacher=ema."})
    rollouts: str = field(
        default="student",
        metadata={"help": "student: the student samples the wrapped prompt (on-policy, OPCT); teacher: the teacher "
                  "answers the clean prompt (off-policy; with loss_type=jsd, beta=0 this is soft-label BCT)."},
    )
    generation_batch_size: int = field(
        default=0, metadata={"help": "Most sequences per generate call (0 = the whole micro-batch, k x prompts, at once)."}
    )
    generation_bf16: bool = field(default=True, metadata={"help": "Sample under bf16 autocast where bf16 is native "
                                  "(opct.precision)."})
    sampling_copy: bool = field(
        default=True,
        metadata={"help": "Sample from the student with its adapter merged into its adapted matrices (in the "
                  "sampling precision, re-synced each step; other weights shared with the student); false: sample "
                  "through the LoRA model."},
    )
    train_attention: str = field(
        default="auto",
        metadata={"help": "Attention kernel of the scoring forwards: eager (matmuls; its backward measured 1.1x faster per "
                  "step than sdpa's on both embedded models on CPU), sdpa, or auto: eager while the attention weights it "
                  "keeps for the backward fit in eager_attention_mb, else sdpa. Sampling always uses the model's own."},
    )
    eager_attention_mb: float = field(default=1024, metadata={"help": "train_attention=auto: the memory bound (MB)."})
    teacher_cache_mb: float = field(
        default=512, metadata={"help": "Memory for the frozen teacher's clean-prompt KV caches kept across steps (MB; 0 = off)."}
    )
    share_prompt_forward: bool = field(
        default=True,
        metadata={"help": "Run the student's wrapped prompts once per step, with gradients, and use that KV cache both as "
                  "the sampling prefill and under the completions in the loss (otherwise sampling prefills its own). "
                  "Applies with the sampling copy, one micro-batch per step, one process and lora_dropout=0."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.loss_type not in LOSSES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSSES)}, got {self.loss_type!r}")
        if self.rollouts not in ROLLOUTS:
            raise ValueError(f"rollouts must be one of {', '.join(ROLLOUTS)}, got {self.rollouts!r}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}")
        if self.train_attention not in ("auto", "eager", "sdpa"):
            raise ValueError(f"train_attention must be auto, eager or sdpa, got {self.train_attention!r}")
        if self.num_samples < 1 or self.max_new_tokens < 1:
            raise ValueError("num_samples and max_new_tokens must be >= 1")


class OPCTTrainer(WindowTrainer):
    """`Trainer` for OPCT on a `datasets.Dataset` of contrastive pairs (see `opct.data`)."""

    def __init__(self, model, args: OPCTConfig, train_dataset, processing_class=None, **kwargs):
        model, tokenizer = prepare_model(model, args)
        processing_class = processing_class or tokenizer
        if processing_class is None:
            raise ValueError("OPCTTrainer needs a tokenizer (processing_class) when given a model object")
        if args.teacher in ("base", "ema") and not hasattr(model, "disable_adapter"):
            raise ValueError(f"teacher={args.teacher!r} needs a LoRA student (use_lora=True); use teacher='live' otherwise")
        super().__init__(model=model, args=args, train_dataset=train_dataset, processing_class=processing_class, **kwargs)
        self.sampler = None
        if args.sampling_copy and args.rollouts == "student" and hasattr(model, "disable_adapter"):
            bf16 = use_bf16(args.generation_bf16, next(model.parameters()).device)
            self.sampler = SamplingCopy(model, torch.bfloat16 if bf16 else torch.float32)
        if args.loss_type == "letter":
            from opct.evals.mcq import letter_token_ids

            self.letter_tokens = letter_token_ids(processing_class, args.answer_letters, args.answer_prefix)
        self.teacher_cache = None
        if args.teacher == "base" and args.teacher_cache_mb > 0:
            self.teacher_cache = PrefixCache(int(args.teacher_cache_mb * 2**20))
        self.ema: dict[str, torch.Tensor] | None = None
        if args.teacher == "ema":
            self.ema = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    # ---- rollouts -------------------------------------------------------------------------
    def prepare_batch(self, rows: list[dict[str, Any]], micro_index: int) -> dict[str, Any]:
        args, tok = self.args, self.processing_class
        pairs = [pair_from_row(r) for r in rows]
        wrapped = [cut_left(render_prompt(tok, p.wrapped), args.max_prompt_length) for p in pairs]
        clean = [cut_left(render_prompt(tok, p.clean), args.max_prompt_length) for p in pairs]

        # Sampling gets its own seeded RNG stream (seed, step, micro-batch, process), so a resumed
        # run draws the same samples as an uninterrupted one and training's RNG is untouched.
        stream = hash((args.seed, self.state.global_step, micro_index, args.process_index)) % (2**63)
        model = self.accelerator.unwrap_model(self.model)
        context, sampling = nullcontext(), nullcontext(model)
        if args.rollouts == "teacher":
            prompts, context = clean, self.teacher_context(model)
        else:
            prompts = wrapped
            if self.sampler is not None:  # merged for this sampling only: training gets that memory back
                sampling = self.sampler.merged()
        k = args.num_samples
        chunk = max(1, args.generation_batch_size // k) if args.generation_batch_size else len(prompts)
        heads, kernel = None, None
        if self.shares_prompt_forward():
            # the longest tail is not known before sampling: bound it (the letter loss adds its prefix and slot)
            kernel = self.attention_for(self.model, wrapped, clean, args.max_new_tokens + 8)
            heads = self.wrapped_heads(wrapped, kernel)
        watch = Stopwatch()
        completions = []
        with seeded_rng(stream, self.model.device), context, sampling as model:
            for s in range(0, len(prompts), chunk):
                completions += generate_ids(
                    model, tok, prompts[s : s + chunk], num_samples=k,
                    max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                    bf16=args.generation_bf16,
                    heads_kv=detached_kv(heads, self.sampler.dtype, s, s + chunk) if heads else None,
                )
        gen_seconds = watch.seconds()
        completion_ids = [c.token_ids for c in completions]
        n_tokens = sum(len(c) for c in completion_ids)
        self.record(
            completion_length=n_tokens / len(completions),
            finished_fraction=sum(c.finished for c in completions) / len(completions),
            generation_tokens_per_s=n_tokens / gen_seconds,
        )
        c_ids, c_mask = right_pad(completion_ids, pad_id(tok))
        batch = {"num_items": n_tokens, "student_prompts": wrapped, "teacher_prompts": clean,
                 "completion_ids": c_ids, "completion_mask": c_mask}
        if heads is not None:
            batch.update(student_heads=heads, attention=kernel)
        if args.loss_type == "letter":
            batch.update(self.letter_batch(completions))
        return batch

    def shares_prompt_forward(self) -> bool:
        """Whether the student's wrapped-prompt forward is run once, before sampling
        (`share_prompt_forward`). Its graph is kept until the backward, so only one micro-batch's
        may be alive (one per step), and the KV must be what sampling would compute: no LoRA
        dropout, and the sampling copy's dtype known."""
        args = self.args
        return (args.share_prompt_forward and self.sampler is not None and args.rollouts == "student"
                and args.gradient_accumulation_steps == 1 and args.world_size == 1 and args.n_gpu <= 1
                and args.lora_dropout == 0)

    def wrapped_heads(self, wrapped: list[list[int]], kernel: str):
        """The wrapped prompts' heads (`opct.prefix.student_heads`) under the training model, with
        gradients, in training mode and under the training precision."""
        model = self.model_wrapped
        unwrapped = self.accelerator.unwrap_model(model)
        unwrapped.train()
        device = next(unwrapped.parameters()).device
        with attention_kernel(unwrapped, kernel), autocast_context(device, self.args.bf16):
            return student_heads(model, wrapped, pad_id(self.processing_class))

    def letter_batch(self, completions) -> dict[str, torch.Tensor]:
        """Each response without its EOS, then the answer prefix, then one slot whose logits read the
        letter (the reference appends "#### " to the response text)."""
        tok, eos = self.processing_class, set(eos_ids(self.processing_class))
        context, _ = self.letter_tokens
        heads = [c.token_ids[:-1] if c.token_ids and c.token_ids[-1] in eos else c.token_ids for c in completions]
        ids, mask = right_pad([h + context + [pad_id(tok)] for h in heads], pad_id(tok))
        for row, h in enumerate(heads):
            mask[row, len(h) + len(context):] = 0
        return {"letter_ids": ids, "letter_mask": mask,
                "letter_positions": torch.tensor([len(h) + len(context) for h in heads])}

    # ---- loss -----------------------------------------------------------------------------
    def attention_for(self, model, student_prompts, teacher_prompts, tail: int) -> str:
        """`train_attention`, with auto resolved for this batch (`tail`: the longest completion + 1):
        eager keeps softmax weights of every layer for the backward (about 8 bytes per query-key
        pair and head: bf16 scores and weights, their fp32 softmax), for the prompt heads and the
        completions over them."""
        if self.args.train_attention != "auto":
            return self.args.train_attention
        config = self.accelerator.unwrap_model(model).config
        heads, layers = getattr(config, "num_attention_heads", None), getattr(config, "num_hidden_layers", None)
        if not heads or not layers:
            return "sdpa"  # cannot size it (a composite config): the kernel that needs no room
        head = max(len(p) for p in [*student_prompts, *teacher_prompts])
        n = len(student_prompts)
        pairs = n * head * head + n * self.args.num_samples * tail * (head + tail)
        needed = 8 * pairs * heads * layers
        return "eager" if needed <= self.args.eager_attention_mb * 2**20 else "sdpa"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        kernel = inputs.get("attention")  # chosen before sampling when the prompt forward is shared
        if kernel is None:
            tail = max(inputs["completion_ids"].shape[1], inputs.get("letter_ids", inputs["completion_ids"]).shape[1]) + 1
            kernel = self.attention_for(model, inputs["student_prompts"], inputs["teacher_prompts"], tail)
        with attention_kernel(self.accelerator.unwrap_model(model), kernel):
            return self.consistency_loss(model, inputs, return_outputs, num_items_in_batch)

    def consistency_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args = self.args
        watch = Stopwatch()
        temperature = args.temperature if args.temperature > 0 else 1.0
        pad, k = pad_id(self.processing_class), args.num_samples
        targets, mask = inputs["completion_ids"], inputs["completion_mask"]
        student_logits = shared_prefix_logits(model, inputs["student_prompts"], targets, mask, k, pad,
                                              heads_kv=inputs.get("student_heads"))
        targets, mask = targets.to(student_logits.device), mask.to(student_logits.device).float()
        if args.loss_type == "letter":
            loss, stats = losses.letter_reverse_kl_loss(
                losses.token_logprobs(student_logits, targets, temperature), mask,
                *self.letter_logits(model, inputs), num_items_in_batch,
            )
            logged = {"letter_kl": stats["letter_kl"]}
        else:
            loss, stats = self.token_divergence(model, inputs, student_logits, targets, mask, temperature,
                                                num_items_in_batch)
            # each loss's own divergence, by its name (reverse_kl, reverse_kl_topk, jsd)
            logged = {key: value for key, value in stats.items() if key != "tokens"}
        self.record(**logged, train_tokens_per_s=float(mask.sum()) / watch.seconds())
        loss = loss * self.loss_scale()
        return (loss, {"logits": student_logits}) if return_outputs else loss

    def token_divergence(self, model, inputs, student_logits, targets, mask, temperature, num_items):
        """The per-token divergence of `loss_type` between the student's logits and the teacher's on
        the same completions under the clean prompts: (loss, stats)."""
        args = self.args
        with torch.no_grad(), self.teacher_context(model):
            teacher_logits = shared_prefix_logits(model, inputs["teacher_prompts"], inputs["completion_ids"],
                                                  inputs["completion_mask"], args.num_samples,
                                                  pad_id(self.processing_class), cache=self.frozen_teacher_cache(model))
        return TOKEN_LOSSES[args.loss_type](student_logits, teacher_logits, targets, mask, num_items, temperature, args)

    @torch.no_grad()
    def letter_logits(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, letters] logits after each response + answer prefix: student (wrapped), teacher (clean)."""
        pad, k = pad_id(self.processing_class), self.args.num_samples
        ids, mask, at = inputs["letter_ids"], inputs["letter_mask"], inputs["letter_positions"]
        letters = torch.tensor(self.letter_tokens[1])

        def read(logits):
            return logits[torch.arange(len(at)), at.to(logits.device)][:, letters.to(logits.device)]

        student = read(shared_prefix_logits(model, inputs["student_prompts"], ids, mask, k, pad,
                                            heads_kv=inputs.get("student_heads")))
        with self.teacher_context(model):
            teacher = read(shared_prefix_logits(model, inputs["teacher_prompts"], ids, mask, k, pad,
                                                cache=self.frozen_teacher_cache(model)))
        return student, teacher

    def frozen_teacher_cache(self, model) -> PrefixCache | None:
        """The clean-prompt KV cache, kept across steps, when the teacher is the frozen base."""
        if self.teacher_cache is None:
            return None
        base = self.accelerator.unwrap_model(model).get_base_model()
        self.teacher_cache.bind((id(base), next(base.parameters()).dtype, torch.is_autocast_enabled()))
        return self.teacher_cache

    @contextmanager
    def teacher_context(self, model):
        unwrapped = self.accelerator.unwrap_model(model)
        if self.args.teacher == "base":
            with unwrapped.disable_adapter():
                yield
        elif self.args.teacher == "ema":
            params = {n: p for n, p in unwrapped.named_parameters() if n in self.ema}
            saved = {n: p.detach().clone() for n, p in params.items()}
            for n, p in params.items():
                p.data.copy_(self.ema[n])
            try:
                yield
            finally:
                for n, p in params.items():
                    p.data.copy_(saved[n])
        else:
            yield

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        # Runs once per optimizer step, after the update: the place to move the EMA teacher.
        if self.ema is not None:
            unwrapped = self.accelerator.unwrap_model(self.model)
            with torch.no_grad():
                for n, p in unwrapped.named_parameters():
                    if n in self.ema:
                        self.ema[n].mul_(self.args.ema_decay).add_(p.detach(), alpha=1 - self.args.ema_decay)
        return super()._maybe_log_save_evaluate(*args, **kwargs)


def build_scoring_batch(student_prompts, teacher_prompts, completion_ids, pad: int) -> dict[str, torch.Tensor]:
    """Student = wrapped prompt + completion, teacher = clean prompt + the same completion.

    Prompts are left-padded and completions right-padded, so in both sequences the completion
    starts at the same column from the right end of the prompt block: the last C+1 logits of
    either sequence line up token for token.
    """
    s_ids, s_mask = left_pad(student_prompts, pad)
    t_ids, t_mask = left_pad(teacher_prompts, pad)
    c_ids, c_mask = right_pad(completion_ids, pad)
    return {
        "student_ids": torch.cat([s_ids, c_ids], 1),
        "student_mask": torch.cat([s_mask, c_mask], 1),
        "teacher_ids": torch.cat([t_ids, c_ids], 1),
        "teacher_mask": torch.cat([t_mask, c_mask], 1),
        "completion_ids": c_ids,
        "completion_mask": c_mask,
    }


def completion_logits(model, ids: torch.Tensor, mask: torch.Tensor, completion_len: int) -> torch.Tensor:
    """Logits predicting each of the last `completion_len` tokens (only those are computed)."""
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
        logits_to_keep=completion_len + 1, use_cache=False,
    )
    return out.logits[:, :-1]


@torch.no_grad()
def consistency_kl(model, tokenizer, pairs, *, num_samples: int = 2, max_new_tokens: int = 32,
                   temperature: float = 1.0, seed: int = 0, teacher_context=None) -> float:
    """Exact per-token reverse KL(student on wrapped || teacher on clean), averaged over the
    student's own samples: the quantity OPCT minimises. The teacher is the model inside
    `teacher_context` (default: the adapter disabled, i.e. the initial weights)."""
    tok = tokenizer
    student_prompts = [render_prompt(tok, p.wrapped) for p in pairs for _ in range(num_samples)]
    teacher_prompts = [render_prompt(tok, p.clean) for p in pairs for _ in range(num_samples)]
    with seeded_rng(seed, model.device):
        comps = generate_ids(model, tok, student_prompts, max_new_tokens=max_new_tokens, temperature=temperature)
    batch = build_scoring_batch(student_prompts, teacher_prompts, [c.token_ids for c in comps], pad_id(tok))
    batch = {key: value.to(model.device) for key, value in batch.items()}
    mask = batch["completion_mask"].float()
    student = completion_logits(model, batch["student_ids"], batch["student_mask"], mask.shape[1])
    with (teacher_context() if teacher_context else model.disable_adapter()):
        teacher = completion_logits(model, batch["teacher_ids"], batch["teacher_mask"], mask.shape[1])
    _, stats = losses.full_reverse_kl_loss(student, teacher, mask, None, temperature if temperature > 0 else 1.0)
    return stats["reverse_kl"]
