"""Verifiable instruction following: prompts whose format constraints are checked by code.

Each `InstructionSpec` is a user prompt plus a list of checks ``{"type": ..., **params}``; a
response passes a prompt only when every check passes (prompt-level strict accuracy).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from opct.defaults import DECODE_BATCH


@dataclass
class InstructionSpec:
    id: str
    prompt: str
    checks: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------- check functions

_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")


def count_words(text: str) -> int:
    return len(_WORD_RE.findall(text))


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<![A-Za-z0-9])" + re.escape(word) + r"(?![A-Za-z0-9])", text, flags=re.IGNORECASE) is not None


def _json_object(text: str) -> Any:
    """The response parsed as JSON; a surrounding ```json fence is allowed."""
    t = text.strip()
    m = re.fullmatch(r"```(?:json|JSON)?\s*\n?(.*?)\n?\s*```", t, flags=re.DOTALL)
    if m:
        t = m.group(1).strip()
    return json.loads(t)


def _json_keys(text: str, keys: Sequence[str]) -> bool:
    try:
        obj = _json_object(text)
    except (json.JSONDecodeError, ValueError):
        return False
    return isinstance(obj, dict) and all(k in obj for k in keys)


def _bullets(text: str) -> list[str]:
    """Markdown bullet lines ("* item" or "- item"); "***"/"---" separators are not bullets."""
    return [ln for ln in text.splitlines() if re.match(r"^\s*[*-]\s+\S", ln)]


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def _sections(text: str, marker: str) -> int:
    return len(re.findall(r"(?m)^\s*(?:#+\s*|\*\*)?" + re.escape(marker) + r"\s+\d+", text))


CHECKS: dict[str, Callable[..., bool]] = {
    "max_words": lambda r, n: count_words(r) <= n,
    "min_words": lambda r, n: count_words(r) >= n,
    "include_keywords": lambda r, words: all(_has_word(r, w) for w in words),
    "forbidden_words": lambda r, words: not any(_has_word(r, w) for w in words),
    "keyword_frequency": lambda r, word, min_count: len(
        re.findall(r"(?<![A-Za-z0-9])" + re.escape(word) + r"(?![A-Za-z0-9])", r, flags=re.IGNORECASE)) >= min_count,
    "json_keys": lambda r, keys: _json_keys(r, keys),
    "bullet_count": lambda r, n: len(_bullets(r)) == n,
    "lowercase": lambda r: bool(re.search(r"[a-z]", r)) and r == r.lower(),
    "uppercase": lambda r: bool(re.search(r"[A-Z]", r)) and r == r.upper(),
    "starts_with": lambda r, phrase: r.strip().startswith(phrase),
    "ends_with": lambda r, phrase: r.strip().endswith(phrase),
    "paragraph_count": lambda r, n: len(_paragraphs(r)) == n,
    "title": lambda r: re.search(r"<<[^<>\n]*\S[^<>\n]*>>", r) is not None,
    "no_commas": lambda r: "," not in r and "，" not in r,
    "placeholders": lambda r, min_count: len(re.findall(r"\[[^\[\]\n]+\]", r)) >= min_count,
    "postscript": lambda r, marker="P.S.": re.search(r"(?m)^\s*" + re.escape(marker), r) is not None,
    "quotation": lambda r: len(r.strip()) >= 2 and r.strip()[0] == '"' and r.strip()[-1] == '"',
    "sections": lambda r, n, marker="SECTION": _sections(r, marker) == n,
    "highlights": lambda r, min_count: len(re.findall(r"(?<!\*)\*[^*\n]+\*(?!\*)", r)) >= min_count,
    "max_chars": lambda r, n: len(r.strip()) <= n,
}


def check_results(spec: InstructionSpec | Mapping[str, Any], response: str) -> list[bool]:
    """One bool per check of `spec`, in order."""
    checks = spec.checks if isinstance(spec, InstructionSpec) else spec["checks"]
    out = []
    for c in checks:
        params = {k: v for k, v in c.items() if k != "type"}
        if c["type"] not in CHECKS:
            raise ValueError(f"unknown check type {c['type']!r}; known: {', '.join(sorted(CHECKS))}")
        out.append(bool(CHECKS[c["type"]](response, **params)))
    return out


def check(spec: InstructionSpec | Mapping[str, Any], response: str) -> bool:
    """True when `response` satisfies every check of `spec`."""
    return all(check_results(spec, response))


# ---------------------------------------------------------------------------- the prompt set


def _s(id: str, prompt: str, *checks: dict[str, Any]) -> InstructionSpec:
    return InstructionSpec(id=id, prompt=prompt, checks=list(checks))


INSTRUCTION_SPECS: list[InstructionSpec] = [
    _s("if-01", "Describe a rainy afternoon in a small town in fewer than 60 words.", {"type": "max_words", "n": 60}),
    _s("if-02", "List exactly 3 benefits of regular exercise as markdown bullet points starting with '* '. "
               "Write nothing else.", {"type": "bullet_count", "n": 3}),
    _s("if-03", "Write a short note inviting a neighbor to a barbecue. Your entire response must be in lowercase "
               "letters, with no capital letters at all.", {"type": "lowercase"}),
    _s("if-04", 'Return a JSON object describing a fictional book, with the keys "title", "author" and "year". '
               "Output only the JSON.", {"type": "json_keys", "keys": ["title", "author", "year"]}),
    _s("if-05", "Explain why the sky looks blue. Your answer must include the words 'light' and 'scattering'.",
       {"type": "include_keywords", "words": ["light", "scattering"]}),
    _s("if-06", "Write a two-sentence product description for a water bottle without using the words 'plastic' "
               "or 'cheap'.", {"type": "forbidden_words", "words": ["plastic", "cheap"]}),
    _s("if-07", "Give one tip for staying focused while studying. End your response with the exact phrase "
               "'Is there anything else I can help with?'",
       {"type": "ends_with", "phrase": "Is there anything else I can help with?"}),
    _s("if-08", "Write exactly 2 paragraphs about the history of bicycles. Separate the paragraphs with a blank line.",
       {"type": "paragraph_count", "n": 2}),
    _s("if-09", "Write a four-line poem about the ocean. Give it a title wrapped in double angular brackets, "
               "like <<title>>.", {"type": "title"}),
    _s("if-10", "Describe your ideal weekend without using any commas.", {"type": "no_commas"}),
    _s("if-11", "Write a short story for children of at least 120 words about a lost kitten.",
       {"type": "min_words", "n": 120}),
    _s("if-12", "Write a template for a job offer letter. Use at least 3 placeholders in square brackets, "
               "such as [name].", {"type": "placeholders", "min_count": 3}),
    _s("if-13", "Write a brief email to a colleague thanking them for their help. At the end, add a postscript "
               "starting with P.S.", {"type": "postscript", "marker": "P.S."}),
    _s("if-14", "Wrap your entire response in double quotation marks. What is a good name for a friendly robot?",
       {"type": "quotation"}),
    _s("if-15", "Write a plan for learning to cook, in exactly 3 sections. Mark the start of each section with "
               "'SECTION X', for example SECTION 1.", {"type": "sections", "n": 3, "marker": "SECTION"}),
    _s("if-16", "Explain what a rainbow is. Highlight at least 2 phrases with markdown italics, like *this phrase*.",
       {"type": "highlights", "min_count": 2}),
    _s("if-17", "Your entire response must be in English and in capital letters only. Describe a thunderstorm "
               "in one or two sentences.", {"type": "uppercase"}),
    _s("if-18", "Start your response with the word 'Certainly' and then explain how to boil an egg.",
       {"type": "starts_with", "phrase": "Certainly"}),
    _s("if-19", "Write a tweet about a new coffee shop opening. Keep it under 200 characters in total.",
       {"type": "max_chars", "n": 200}),
    _s("if-20", "Write a paragraph about gardening in which the word 'soil' appears at least 3 times.",
       {"type": "keyword_frequency", "word": "soil", "min_count": 3}),
    _s("if-21", "List exactly 5 fruits that are rich in vitamin C as markdown bullet points using '- '. Keep the "
               "whole answer under 50 words.", {"type": "bullet_count", "n": 5}, {"type": "max_words", "n": 50}),
    _s("if-22", 'Output a JSON object with the keys "city" and "country" for the city of Lisbon. Do not write '
               "anything outside the JSON.", {"type": "json_keys", "keys": ["city", "country"]}),
    _s("if-23", "Write a haiku about autumn leaves, all in lowercase letters, and include the word 'wind'.",
       {"type": "lowercase"}, {"type": "include_keywords", "words": ["wind"]}),
    _s("if-24", "Summarize the benefits of reading books in at most 40 words and without using the word 'knowledge'.",
       {"type": "max_words", "n": 40}, {"type": "forbidden_words", "words": ["knowledge"]}),
    _s("if-25", "Write exactly 3 paragraphs about how volcanoes form, separated by blank lines. "
               "End your response with the phrase 'That is all.'",
       {"type": "paragraph_count", "n": 3}, {"type": "ends_with", "phrase": "That is all."}),
    _s("if-26", "Write a short recipe for a fruit salad. Include a title wrapped in double angular brackets, "
               "such as <<Summer Salad>>, and list exactly 4 ingredients as markdown bullet points.",
       {"type": "title"}, {"type": "bullet_count", "n": 4}),
    _s("if-27", 'Give a JSON object with the keys "name", "age" and "hobbies" for an imaginary person, where '
               '"hobbies" is a list. Respond with JSON only.', {"type": "json_keys", "keys": ["name", "age", "hobbies"]}),
    _s("if-28", "Explain what a database index is in at least 80 words, and mention the word 'query'.",
       {"type": "min_words", "n": 80}, {"type": "include_keywords", "words": ["query"]}),
    _s("if-29", "Describe the moon in one short paragraph. Do not use any commas, and do not use the word 'night'.",
       {"type": "no_commas"}, {"type": "forbidden_words", "words": ["night"]}),
    _s("if-30", "Write a packing list for a weekend camping trip with exactly 6 markdown bullet points, "
               "then end with the phrase 'Happy camping!'",
       {"type": "bullet_count", "n": 6}, {"type": "ends_with", "phrase": "Happy camping!"}),
    _s("if-31", "Write a short motivational message in all capital letters, in fewer than 30 words.",
       {"type": "uppercase"}, {"type": "max_words", "n": 30}),
    _s("if-32", "Write a blog post outline with 2 sections, each starting with 'SECTION 1' and 'SECTION 2'. "
               "Include at least 2 placeholders in square brackets.",
       {"type": "sections", "n": 2, "marker": "SECTION"}, {"type": "placeholders", "min_count": 2}),
    _s("if-33", "Start your response with 'Dear reader,' and write a short welcome message for a newsletter. "
               "Add a postscript starting with P.S. at the end.",
       {"type": "starts_with", "phrase": "Dear reader,"}, {"type": "postscript", "marker": "P.S."}),
    _s("if-34", "In fewer than 50 words, explain what photosynthesis is. Use the word 'sunlight' at least twice.",
       {"type": "max_words", "n": 50}, {"type": "keyword_frequency", "word": "sunlight", "min_count": 2}),
    _s("if-35", "Wrap your whole answer in double quotation marks and answer in lowercase only: what is your "
               "favorite season and why?", {"type": "quotation"}, {"type": "lowercase"}),
    _s("if-36", "Write a limerick about a cat. Give it a title in double angular brackets like <<title>> and do "
               "not use the word 'dog'.", {"type": "title"}, {"type": "forbidden_words", "words": ["dog"]}),
]


def instruction_specs(n: int | None = None) -> list[InstructionSpec]:
    """The built-in prompt set (the first `n` when given)."""
    return list(INSTRUCTION_SPECS[:n] if n is not None else INSTRUCTION_SPECS)


def instruction_accuracy(
    model,
    tokenizer,
    n: int | None = None,
    max_new_tokens: int = 256,
    batch_size: int = DECODE_BATCH,
    progress: bool | str = False,
    specs: Sequence[InstructionSpec] | None = None,
    return_records: bool = False,
) -> dict[str, Any]:
    """Prompt-level strict accuracy (every check passes) as a `summarize` dict, with
    "instruction_level": the fraction of individual checks passed, "cut_off": the answers stopped by
    `max_new_tokens`, and per-prompt "records" when asked."""
    from opct.evals.stats import summarize
    from opct.generation import generate

    specs = list(specs) if specs is not None else instruction_specs(n)
    if n is not None:
        specs = specs[:n]
    outs = generate(model, tokenizer, [[{"role": "user", "content": s.prompt}] for s in specs],
                    max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size, progress=progress)
    per_check = [check_results(s, o[0].text) for s, o in zip(specs, outs)]
    result = summarize([float(all(r)) for r in per_check])
    flat = [x for r in per_check for x in r]
    result["instruction_level"] = sum(flat) / len(flat) if flat else None
    result["cut_off"] = sum(not o[0].finished for o in outs)
    if return_records:
        result["records"] = [{"id": s.id, "passed": all(r), "checks": r, "finished": o[0].finished, "response": o[0].text}
                             for s, r, o in zip(specs, per_check, outs)]
    return result
