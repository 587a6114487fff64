"""Ordinary instruction prompts written for opct, for mixing into SFT/BCT (Chua et al. mix about
half instruction data in, so the model keeps answering ordinary requests): everyday tasks on many
topics, and benign requests on sensitive-sounding subjects (home safety, security, first aid), so
a jailbreak-trained model also learns that such topics are fine to answer. None of them is in the
evaluation sets (the benign look-alikes, the neutral drift prompts)."""

from __future__ import annotations

import random

TASKS = (
    "Explain {topic} to a ten-year-old.",
    "Write a four-line poem about {topic}.",
    "List three surprising facts about {topic}.",
    "Summarise the history of {topic} in four sentences.",
    "Give me a one-week study plan for learning about {topic}.",
    "Write a short product description for a board game about {topic}.",
    "What are common misconceptions about {topic}?",
    "Suggest a title and an outline for a school presentation on {topic}.",
)
TOPICS = (
    "volcanoes", "the printing press", "honeybees", "tidal energy", "the Roman aqueducts", "chess openings",
    "sourdough bread", "black holes", "the water cycle", "jazz improvisation", "origami", "the immune system",
    "glaciers", "electric guitars", "migratory birds", "the metric system", "coral reefs", "the Silk Road",
    "rainbows", "public libraries", "wind turbines", "the human heart", "octopuses", "board game design",
)
SENSITIVE = (
    "What are the warning signs of carbon monoxide in a home, and what should I do if the alarm goes off?",
    "How should I store household bleach and ammonia products so they never get mixed?",
    "How do I report a phishing email to my bank?",
    "What should I do right away if a child swallows a button battery?",
    "How can I check whether a stranger has joined my home wifi network?",
    "Why is it dangerous to combine alcohol with sleeping pills?",
    "How do I safely dispose of expired prescription medication?",
    "What is the safest way to remove a tick from a dog?",
    "How do password managers keep my passwords safe?",
    "What tactics do phone scammers use on elderly people, so I can warn my grandparents?",
    "How does two-factor authentication protect an online account?",
    "What first aid should I give for a deep cut on the hand?",
    "How do I childproof the cabinet where I keep cleaning products?",
    "How can hikers avoid eating poisonous wild mushrooms?",
    "What should I do if I find an old rifle cartridge in my late grandfather's shed?",
    "How do I recognise the symptoms of heat stroke during a summer run?",
    "What makes a lithium battery catch fire, and how do I charge my e-bike safely?",
    "How can small businesses protect themselves from ransomware?",
    "What should I do if I think someone is following me home at night?",
    "How do I talk to a friend who says they have been feeling hopeless?",
    "How do smoke detectors work, and how often should I test them?",
    "What are the signs that a website is a fake online shop?",
    "How should I handle a kitchen grease fire?",
    "Which common garden plants are toxic to cats?",
)
KINDS = ("ordinary", "sensitive")


def instruction_prompts(n: int | None = None, seed: int = 0, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """`n` prompts (all when None), interleaving the kinds, in an order fixed by `seed`."""
    bad = set(kinds) - set(KINDS)
    if bad:
        raise ValueError(f"unknown instruction kinds {sorted(bad)}; expected some of {', '.join(KINDS)}")
    rng = random.Random(seed)
    pools = {"ordinary": [t.format(topic=x) for t in TASKS for x in TOPICS], "sensitive": list(SENSITIVE)}
    for pool in pools.values():
        rng.shuffle(pool)
    chosen = [pools[k] for k in kinds]
    out = [p for group in zip(*chosen) for p in group]  # alternate while every kind has prompts
    out += [p for pool in chosen for p in pool[min(map(len, chosen)):]]
    return out if n is None else out[:n]


def instruction_pairs(n: int, seed: int = 0, kinds: tuple[str, ...] = KINDS):
    """Pairs whose wrapped and clean prompts are the same instruction: SFT's target is the model's
    own answer to it (a regulariser that keeps ordinary behaviour)."""
    from opct.data.schema import ContrastivePair

    return [ContrastivePair(id=f"mix-{seed}-{i}", axis="instruction", clean=[{"role": "user", "content": p}],
                            wrapped=[{"role": "user", "content": p}], meta={"family": "instruction_mix"})
            for i, p in enumerate(instruction_prompts(n, seed, kinds))]
