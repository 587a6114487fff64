"""Math capability: generated word problems, GSM8K / MATH-500 loaders, answer extraction and grading.

Generated problems have exact integer answers and expose their numbers (`values`) and the
arithmetic (`formula`) so the answer can be re-derived independently. Model answers are read
from the final ``#### <answer>`` line (or ``\\boxed{}``, "the answer is ...", or the last number).

One concern over 400 lines: math capability (generated problems, benchmark loaders, answer grading).
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import operator
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from opct.defaults import DECODE_BATCH
from opct.errors import UserError

# ---------------------------------------------------------------------------- problem records


@dataclass
class MathProblem:
    """One problem: `answer` is the gold answer as text; `kind` is "number" (graded numerically)
    or "latex" (MATH-style answer graded by `math_equal`)."""

    id: str
    question: str
    answer: str
    kind: str = "number"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class WordProblem(MathProblem):
    """A generated word problem. `formula` is an arithmetic expression over the names in
    `values` whose value is the integer answer."""

    level: int = 1
    template: str = ""
    values: dict[str, int] = field(default_factory=dict)
    formula: str = ""

    @property
    def answer_int(self) -> int:
        return int(self.answer)


class BenchmarkDataError(UserError):
    """A malformed benchmark file; the message names file:line and the problem."""


class BenchmarkUnavailable(UserError):
    """A benchmark that cannot be loaded here (no file given and the hub is unreachable)."""


# ---------------------------------------------------------------------------- word problems

NAMES = ["Maya", "Omar", "Lena", "Ravi", "Sofia", "Kenji", "Amara", "Lucas", "Priya", "Tomas", "Nadia", "Ethan",
         "Zara", "Diego", "Hana", "Felix", "Aisha", "Mateo", "Ingrid", "Kwame"]
ITEMS = [("notebook", "notebooks"), ("pen", "pens"), ("mug", "mugs"), ("book", "books"), ("plant", "plants"),
         ("candle", "candles"), ("scarf", "scarves"), ("puzzle", "puzzles"), ("lamp", "lamps"), ("ticket", "tickets")]
FOODS = [("cookie", "cookies"), ("apple", "apples"), ("muffin", "muffins"), ("orange", "oranges"),
         ("cupcake", "cupcakes"), ("sandwich", "sandwiches")]
VEHICLES = ["train", "bus", "car", "truck", "coach", "van"]
CROPS = [("tomato", "tomatoes"), ("pepper", "peppers"), ("carrot", "carrots"), ("strawberry", "strawberries")]
PRODUCTS = [("toy car", "toy cars"), ("chair", "chairs"), ("bottle", "bottles"), ("brick", "bricks"), ("shirt", "shirts")]

# A template draws numbers with `rng` and returns (question, answer, values, formula).
Template = Callable[[random.Random], tuple[str, int, dict[str, int], str]]


def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))]


# -- level 1: one operation

def _l1_shopping(rng):
    name, (_, items) = _pick(rng, NAMES), _pick(rng, ITEMS)
    a, p = rng.randint(2, 12), rng.randint(2, 25)
    return f"{name} buys {a} {items} that cost ${p} each. How many dollars does {name} spend?", a * p, {"a": a, "p": p}, "a * p"


def _l1_travel(rng):
    v, h, s = _pick(rng, VEHICLES), rng.randint(2, 9), rng.randint(4, 30) * 5
    d = s * h
    return (f"A {v} covers {d} km in {h} hours at a constant speed. What is its speed in km per hour?",
            s, {"d": d, "h": h}, "d / h")


def _l1_ages(rng):
    name, a = _pick(rng, NAMES), rng.randint(20, 70)
    b = rng.randint(2, a - 5)
    return f"{name} is {a} years old. {name}'s cousin is {b} years younger. How old is the cousin?", a - b, {"a": a, "b": b}, "a - b"


def _l1_collect(rng):
    name, a, b = _pick(rng, NAMES), rng.randint(5, 300), rng.randint(5, 300)
    return (f"{name} has {a} stamps in an album and is given {b} more. How many stamps does {name} have now?",
            a + b, {"a": a, "b": b}, "a + b")


def _l1_work(rng):
    r, t = rng.randint(3, 40), rng.randint(2, 30)
    return (f"A printer prints {r} pages per minute. How many pages does it print in {t} minutes?",
            r * t, {"r": r, "t": t}, "r * t")


def _l1_sharing(rng):
    (_, foods), k, each = _pick(rng, FOODS), rng.randint(2, 12), rng.randint(2, 15)
    total = k * each
    return (f"{total} {foods} are shared equally among {k} friends. How many {foods} does each friend get?",
            each, {"total": total, "k": k}, "total / k")


# -- level 2: two steps

def _l2_change(rng):
    name, (_, items) = _pick(rng, NAMES), _pick(rng, ITEMS)
    a, p = rng.randint(2, 9), rng.randint(2, 15)
    bill = _pick(rng, [50, 100, 200]) if a * p < 50 else _pick(rng, [200, 500])
    return (f"{name} buys {a} {items} at ${p} each and pays with a ${bill} bill. How many dollars of change does {name} get?",
            bill - a * p, {"bill": bill, "a": a, "p": p}, "bill - a * p")


def _l2_recipe(rng):
    p, unit, q = rng.randint(2, 8), rng.randint(20, 150), rng.randint(2, 16)
    g = p * unit
    return (f"A recipe for {p} people uses {g} grams of flour. How many grams of flour are needed for {q} people?",
            unit * q, {"g": g, "p": p, "q": q}, "g / p * q")


def _l2_teams(rng):
    t, teams_per_class, c = rng.randint(2, 6), rng.randint(3, 7), rng.randint(2, 9)
    s = t * teams_per_class
    return (f"A school has {c} classes with {s} students each. All students are split into teams of {t}. "
            f"How many teams are there?", c * s // t, {"c": c, "s": s, "t": t}, "c * s / t")


def _l2_sale(rng):
    (_, items), price, d, a = _pick(rng, ITEMS), rng.randint(10, 60), rng.randint(1, 9), rng.randint(2, 12)
    return (f"{items.capitalize()} normally cost ${price} each, but today each one is ${d} off. "
            f"How many dollars do {a} {items} cost today?", (price - d) * a, {"price": price, "d": d, "a": a},
            "(price - d) * a")


def _l2_ages(rng):
    name, a, b, y = _pick(rng, NAMES), rng.randint(5, 40), rng.randint(2, 15), rng.randint(2, 20)
    return (f"{name} is {a} years old and {name}'s brother is {b} years older. How old will the brother be in {y} years?",
            a + b + y, {"a": a, "b": b, "y": y}, "a + b + y")


def _l2_tank(rng):
    r1, r2, m = rng.randint(2, 20), rng.randint(2, 20), rng.randint(3, 25)
    tank = (r1 + r2) * m
    return (f"One pipe fills a tank at {r1} liters per minute and a second pipe at {r2} liters per minute. "
            f"With both pipes open, how many minutes does it take to fill an empty {tank}-liter tank?",
            m, {"tank": tank, "r1": r1, "r2": r2}, "tank / (r1 + r2)")


def _l2_trip(rng):
    v, x, s, h = _pick(rng, VEHICLES), rng.randint(10, 200), rng.randint(20, 90), rng.randint(2, 6)
    return (f"A {v} has already traveled {x} km. It then travels {h} more hours at {s} km per hour. "
            f"How many km has it traveled in total?", x + s * h, {"x": x, "s": s, "h": h}, "x + s * h")


# -- level 3: three or more steps, multiplication/division kept integral

def _l3_coupon(rng):
    name, (_, it1), (_, it2) = _pick(rng, NAMES), *rng.sample(ITEMS, 2)
    a, p, b, q = rng.randint(2, 6), rng.randint(3, 20), rng.randint(2, 6), rng.randint(3, 20)
    c = rng.randint(1, min(15, a * p + b * q - 1))
    return (f"{name} buys {a} {it1} at ${p} each and {b} {it2} at ${q} each, then uses a ${c} coupon on the total. "
            f"How many dollars does {name} pay?", a * p + b * q - c, {"a": a, "p": p, "b": b, "q": q, "c": c},
            "a * p + b * q - c")


def _l3_fuel(rng):
    v, k = _pick(rng, ["car", "truck", "van", "motorbike"]), rng.randint(5, 15)
    h1, h2 = rng.randint(1, 5), rng.randint(1, 5)
    s1, s2 = k * rng.randint(4, 9), k * rng.randint(4, 9)
    return (f"A {v} drives {h1} hours at {s1} km per hour and then {h2} hours at {s2} km per hour. "
            f"It uses 1 liter of fuel every {k} km. How many liters of fuel does it use?",
            (h1 * s1 + h2 * s2) // k, {"h1": h1, "s1": s1, "h2": h2, "s2": s2, "k": k}, "(h1 * s1 + h2 * s2) / k")


def _l3_factory(rng):
    (_, prods), b = _pick(rng, PRODUCTS), rng.randint(2, 12)
    w, u, h = rng.randint(2, 15), b * rng.randint(1, 6), rng.randint(4, 10)
    return (f"A workshop has {w} workers. Each worker makes {u} {prods} per hour and works {h} hours a day. "
            f"The {prods} are packed in boxes of {b}. How many boxes are filled each day?",
            w * u * h // b, {"w": w, "u": u, "h": h, "b": b}, "w * u * h / b")


def _l3_ages(rng):
    name, a, y = _pick(rng, NAMES), rng.randint(4, 15), rng.randint(2, 12)
    k = rng.randint(max(2, -(-24 // a)), max(2, 50 // a))  # a parent aged 24..50
    return (f"{name} is {a} years old, and {name}'s mother is {k} times as old as {name}. "
            f"In {y} years, what will the sum of their ages be?", a + a * k + 2 * y, {"a": a, "k": k, "y": y},
            "a + a * k + 2 * y")


def _l3_savings(rng):
    name, w, weeks, i = _pick(rng, NAMES), rng.randint(30, 120), rng.randint(3, 20), rng.randint(0, 200)
    s = rng.randint(5, w - 10)
    cost = i + (w - s) * weeks
    return (f"{name} has ${i} saved and wants a bike that costs ${cost}. Each week {name} earns ${w} and spends ${s}. "
            f"How many weeks will it take to have exactly enough money?", weeks,
            {"i": i, "cost": cost, "w": w, "s": s}, "(cost - i) / (w - s)")


def _l3_party(rng):
    n, e, sl, c = rng.randint(4, 30), rng.randint(1, 4), _pick(rng, [6, 8, 10, 12]), rng.randint(8, 20)
    while (n * e) % sl:
        n += 1
    return (f"At a party, each of the {n} guests eats {e} slices of pizza. Each pizza has {sl} slices and costs ${c}. "
            f"If they buy exactly enough pizzas, how many dollars do the pizzas cost?", n * e // sl * c,
            {"n": n, "e": e, "sl": sl, "c": c}, "n * e / sl * c")


def _l3_garden(rng):
    (_, crops), r, p, y, b, c = (_pick(rng, CROPS), rng.randint(2, 8), rng.randint(3, 12), rng.randint(2, 10),
                                 _pick(rng, [2, 4, 5, 10]), rng.randint(2, 9))
    while (r * p * y) % b:
        y += 1
    return (f"A garden has {r} rows with {p} plants in each row. Each plant gives {y} {crops}. The {crops} are packed "
            f"in bags of {b} and each bag sells for ${c}. How many dollars does the whole harvest sell for?",
            r * p * y // b * c, {"r": r, "p": p, "y": y, "b": b, "c": c}, "r * p * y / b * c")


TEMPLATES: dict[int, dict[str, Template]] = {
    1: {"shopping": _l1_shopping, "travel": _l1_travel, "ages": _l1_ages, "collect": _l1_collect,
        "work": _l1_work, "sharing": _l1_sharing},
    2: {"change": _l2_change, "recipe": _l2_recipe, "teams": _l2_teams, "sale": _l2_sale, "ages": _l2_ages,
        "tank": _l2_tank, "trip": _l2_trip},
    3: {"coupon": _l3_coupon, "fuel": _l3_fuel, "factory": _l3_factory, "ages": _l3_ages, "savings": _l3_savings,
        "party": _l3_party, "garden": _l3_garden},
}


def iter_word_problems(seed: int = 0, level: int | Sequence[int] = 1) -> Iterator[WordProblem]:
    """An endless, seed-deterministic stream of word problems; a sequence of levels is cycled."""
    levels = [level] if isinstance(level, int) else list(level)
    for lv in levels:
        if lv not in TEMPLATES:
            raise ValueError(f"level must be one of {sorted(TEMPLATES)}, got {lv}")
    rng = random.Random(f"opct-word-problems-{seed}-{levels}")
    for i in itertools.count():
        lv = levels[i % len(levels)]
        name = _pick(rng, sorted(TEMPLATES[lv]))
        question, answer, values, formula = TEMPLATES[lv][name](rng)
        yield WordProblem(
            id=f"wp-s{seed}-l{lv}-{i}", question=question, answer=str(answer), kind="number", source="generated",
            level=lv, template=name, values=dict(values), formula=formula,
        )


def generate_word_problems(n: int, seed: int = 0, level: int | Sequence[int] = 1) -> list[WordProblem]:
    """`n` distinct word problems (by question text), deterministic for (seed, level)."""
    out, seen = [], set()
    for p in iter_word_problems(seed, level):
        if len(out) >= n:
            break
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    return out


# ---------------------------------------------------------------------------- answer extraction

# optional minus, optional "$" / "\$", digits with optional thousands commas and decimals; or ".5"
_NUM_RE = re.compile(r"(?<![\w.])(-|−)?\\?\$?(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?|(?<![\w.])(-|−)?\.(\d+)")


def _to_number(value: float | Fraction) -> int | float:
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return int(value) if float(value).is_integer() else float(value)


def _numbers(text: str) -> list[int | float]:
    out = []
    for m in _NUM_RE.finditer(text):
        if m.group(5) is not None:  # ".5"
            v = Fraction("0." + m.group(5)) * (-1 if m.group(4) else 1)
        else:
            v = Fraction(m.group(2).replace(",", "") + (m.group(3) or "")) * (-1 if m.group(1) else 1)
        out.append(_to_number(v))
    return out


def parse_number(s: str) -> int | float | None:
    """The number a short answer string denotes ("$1,234", "-3", "3.0", "50%", "\\frac{1}{2}", "3/4"),
    or None when it is not a plain number."""
    t = s.strip().strip("$").strip()
    t = re.sub(r"\\text\{[^{}]*\}|\\%|%|\\\$|\\,|\\!|\s", "", t).replace("−", "-").rstrip(".")
    t = re.sub(r"\\[dt]?frac\{(-?\d+)\}\{(\d+)\}", r"\1/\2", t)
    m = re.fullmatch(r"(-?)(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?", t)
    if m and (m.group(2) or m.group(3)):
        return _to_number(Fraction(f"{m.group(1)}{(m.group(2) or '0').replace(',', '')}.{m.group(3) or '0'}"))
    m = re.fullmatch(r"(-?\d+)/(\d+)", t)
    if m and int(m.group(2)) != 0:
        return _to_number(Fraction(int(m.group(1)), int(m.group(2))))
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with nested braces kept, or of
    ``\\boxed 5``; None when there is none or its braces are unbalanced."""
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)\s*(\{)?", text)]
    for m in reversed(starts):
        if m.group(1) is None:  # "\boxed 5"
            tail = re.match(r"\s*([^\s$]+)", text[m.end():])
            if tail:
                return tail.group(1)
            continue
        depth, i = 1, m.end()
        while i < len(text):
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[m.end():i]
            i += 1
    return None


def extract_hash_answer(text: str) -> str | None:
    """The text after the last "####" up to the end of its line, or None."""
    idx = text.rfind("####")
    if idx < 0:
        return None
    return text[idx + 4:].strip().split("\n", 1)[0].strip() or None


def extract_final_number(text: str) -> int | float | None:
    """The final numeric answer of a response: after the last "####", else in the last \\boxed{},
    else after the last "answer is"/"answer:", else the last number in the text. Integral values
    come back as int ("3.0" -> 3); None when no number is found."""
    if not text:
        return None
    for segment in (extract_hash_answer(text), extract_boxed(text)):
        if segment is not None:
            v = parse_number(segment)
            if v is not None:
                return v
            nums = _numbers(segment)
            if nums:
                return nums[0]
    matches = list(re.finditer(r"answer\s*(?:is|:|=)\s*:?", text, flags=re.IGNORECASE))
    if matches:
        nums = _numbers(text[matches[-1].end():])
        if nums:
            return nums[0]
    nums = _numbers(text)
    return nums[-1] if nums else None


def numbers_equal(pred: int | float | None, gold: int | float | str | None, tol: float = 1e-6) -> bool:
    if pred is None or gold is None:
        return False
    if isinstance(gold, str):
        gold = parse_number(gold)
        if gold is None:
            return False
    return math.isclose(float(pred), float(gold), rel_tol=tol, abs_tol=tol)


# ---------------------------------------------------------------------------- MATH answer normalization

_UNIT_WORDS = (r"(?:cm|m|km|mm|in|inches|inch|ft|feet|foot|yards?|miles?|units?|meters?|centimeters?|degrees?|"
               r"seconds?|minutes?|hours?|days?|dollars?|cents?|sq|square|cubic|pounds?|lbs?|ounces?|mph|kg|g)")


def _strip_text_units(s: str) -> str:
    """Drop trailing unit annotations: "\\text{ cm}", "\\mbox{ inches}^2", " cm"."""
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\{\s*" + _UNIT_WORDS + r"[^{}]*\}(\^\{?\d\}?)?\s*$", "", s).strip()
        s = re.sub(r"(?<=[\d}])\s*" + _UNIT_WORDS + r"(\^\{?\d\}?)?\s*$", "", s).strip()
    return s


def normalize_math_answer(s: str | None) -> str:
    """A canonical string for a MATH-style answer: spacing, \\left/\\right, \\!, \\dfrac, degree
    signs, units, "x =", dollar and percent signs, trailing periods and "5.0" -> "5" are normalized."""
    if s is None:
        return ""
    s = str(s).strip()
    boxed = extract_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.strip().strip("$").strip()
    s = s.replace("\n", " ").replace("−", "-")
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\[!,;: ]", " ", s).replace("~", " ")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°", "", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    s = s.replace("\\displaystyle", "")
    s = _strip_text_units(s)
    m = re.fullmatch(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}", s.strip())
    if m:  # the whole answer is text: "\text{Evelyn}"
        s = m.group(1)
    s = re.sub(r"^\s*[a-zA-Z]\s*(?:=|:)(?!=)\s*", "", s)  # leading "x =" / "y:"
    s = re.sub(r"\s+", "", s).rstrip(".")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"\\frac\{([^{}]+)\}(\d)", r"\\frac{\1}{\2}", s)  # \frac{1}2
    s = re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", s)  # \sqrt2
    s = re.sub(r"^(-?\d+)/(\d+)$", r"\\frac{\1}{\2}", s)  # 3/4
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"-?(\d+\.\d*|\.\d+)", s):
        s = re.sub(r"\.?0+$", "", s) if "." in s else s
        s = "0" + s if s.startswith(".") else s.replace("-.", "-0.")
    return s


def _latex_to_value(s: str) -> float | None:
    """Numeric value of a simple LaTeX expression (fractions, roots, pi, products), or None."""
    t = s
    for _ in range(8):  # innermost first, so nested \frac/\sqrt resolve
        t2 = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", t)
        t2 = re.sub(r"\\sqrt\[(\d+)\]\{([^{}]*)\}", r"((\2)**(1/(\1)))", t2)
        t2 = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", t2)
        if t2 == t:
            break
        t = t2
    t = t.replace("\\pi", "pi").replace("\\cdot", "*").replace("\\times", "*").replace("{", "(").replace("}", ")")
    t = t.replace("^", "**")
    if "\\" in t or not re.fullmatch(r"[\d.+\-*/() a-z]*", t) or re.search(r"[a-z]", re.sub(r"sqrt|pi", "", t)):
        return None
    t = re.sub(r"(\d|\))\s*(?=sqrt|pi|\()", r"\1*", t)  # implicit products: 2sqrt(3), 2pi, (1)(2)
    t = re.sub(r"(pi|\))\s*(?=\d)", r"\1*", t)
    try:
        tree = ast.parse(t, mode="eval")
        return float(_eval_node(tree.body))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError, RecursionError):
        return None


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}


def _eval_node(node) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval_node(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Name) and node.id == "pi":
        return math.pi
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt" and len(node.args) == 1:
        v = _eval_node(node.args[0])
        if v < 0:
            raise ValueError("sqrt of a negative number")
        return math.sqrt(v)
    raise ValueError(f"unsupported expression node {type(node).__name__}")


def math_equal(pred: str | None, gold: str | None) -> bool:
    """Whether two MATH-style answers agree: equal after `normalize_math_answer`, or both simple
    expressions with the same numeric value (relative tolerance 1e-6); tuples compare elementwise."""
    if pred is None or gold is None:
        return False
    a, b = normalize_math_answer(pred), normalize_math_answer(gold)
    if not a or not b:
        return False
    if a == b:
        return True
    va, vb = _latex_to_value(a), _latex_to_value(b)
    if va is not None and vb is not None:
        return math.isclose(va, vb, rel_tol=1e-6, abs_tol=1e-9)
    # tuples / intervals with the same brackets: compare element by element
    pa, pb = _split_tuple(a), _split_tuple(b)
    if pa and pb and pa[0] == pb[0] and len(pa[1]) == len(pb[1]) and len(pa[1]) > 1:
        return all(math_equal(x, y) for x, y in zip(pa[1], pb[1]))
    return False


def _split_tuple(s: str) -> tuple[str, list[str]] | None:
    m = re.fullmatch(r"([(\[])(.*)([)\]])", s)
    body, brackets = (m.group(2), m.group(1) + m.group(3)) if m else (s, "")
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return (brackets, parts) if len(parts) > 1 else None


# ---------------------------------------------------------------------------- grading and the eval loop

NUMBER_INSTRUCTION = (
    "Solve the problem. Reason step by step briefly, then end your response with a final line of the form "
    "`#### <number>`, for example `#### 42`."
)
LATEX_INSTRUCTION = (
    "Solve the problem. Reason step by step briefly, then end your response with a final line of the form "
    "`#### <answer>` giving the final answer in simplest form (LaTeX allowed), for example `#### \\frac{3}{4}`."
)


def math_prompt(problem: MathProblem) -> list[dict[str, str]]:
    instruction = NUMBER_INSTRUCTION if problem.kind == "number" else LATEX_INSTRUCTION
    return [{"role": "user", "content": f"{problem.question.strip()}\n\n{instruction}"}]


def grade_math(problem: MathProblem, response: str) -> bool:
    """Whether a response's final answer matches the problem's gold answer."""
    if problem.kind == "number":
        return numbers_equal(extract_final_number(response), problem.answer)
    pred = extract_hash_answer(response)
    if pred is None:
        pred = extract_boxed(response)
    if pred is None:
        m = list(re.finditer(r"answer\s*is\s*:?", response, flags=re.IGNORECASE))
        pred = response[m[-1].end():].strip().split("\n", 1)[0] if m else None
    return math_equal(pred, problem.answer)


def math_accuracy(
    model,
    tokenizer,
    problems: Sequence[MathProblem],
    max_new_tokens: int = 256,
    batch_size: int = DECODE_BATCH,
    progress: bool | str = False,
    return_records: bool = False,
) -> dict[str, Any]:
    """Greedy-decoding accuracy on `problems` as a `summarize` dict with "cut_off": the answers
    stopped by `max_new_tokens` (a cut-off solution is graded as it stands, so a tight limit scores
    verbosity too), and "records": per-problem {id, correct, finished, response} when `return_records`."""
    from opct.evals.stats import summarize
    from opct.generation import generate

    problems = list(problems)
    outs = generate(model, tokenizer, [math_prompt(p) for p in problems], max_new_tokens=max_new_tokens,
                    temperature=0.0, batch_size=batch_size, progress=progress)
    correct = [grade_math(p, o[0].text) for p, o in zip(problems, outs)]
    result = summarize([float(c) for c in correct])
    result["cut_off"] = sum(not o[0].finished for o in outs)
    if return_records:
        result["records"] = [{"id": p.id, "correct": c, "gold": p.answer, "finished": o[0].finished, "response": o[0].text}
                             for p, c, o in zip(problems, correct, outs)]
    return result


# ---------------------------------------------------------------------------- GSM8K / MATH-500 loaders


def _read_jsonl(path: str | Path, required: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
    from opct.data.jsonl import read_jsonl

    def check(row: dict[str, Any]) -> list[str]:
        missing = [k for k in required if not isinstance(row.get(k), (str, int, float)) or str(row.get(k)).strip() == ""]
        return [f"missing or empty field(s) {', '.join(repr(k) for k in missing)}"] if missing else []

    return read_jsonl(path, check, error=BenchmarkDataError)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be reached (True in offline mode, where the cache decides)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", ""):
        return True
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_hub(name: str, config: str | None, split: str):
    if not hub_reachable():
        raise BenchmarkUnavailable(f"offline: huggingface.co is unreachable, so {name} cannot be downloaded; "
                                   "pass a local JSONL file instead")
    try:
        from datasets import load_dataset

        return load_dataset(name, config, split=split) if config else load_dataset(name, split=split)
    except Exception as e:  # network, auth or cache problems: report, never crash the suite
        raise BenchmarkUnavailable(f"could not load {name} from the hub: {type(e).__name__}: {e}") from e


def _gsm8k_gold(answer: str, where: str) -> str:
    gold = extract_hash_answer(str(answer))
    value = parse_number(gold) if gold is not None else None
    if value is None:
        raise BenchmarkDataError(f"{where}: field 'answer' has no final '#### <number>' line")
    return str(value)


def load_gsm8k(file: str | Path | None = None, split: str = "test", limit: int | None = None) -> list[MathProblem]:
    """GSM8K problems from a JSONL file of {"question", "answer"} (the answer ends in "#### N"; a
    bare number is accepted too) or, without a file, from the hub (`openai/gsm8k`, "main")."""
    problems = []
    if file is not None:
        for lineno, row in _read_jsonl(file, ("question", "answer")):
            ans = str(row["answer"])
            gold = str(parse_number(ans)) if parse_number(ans) is not None else _gsm8k_gold(ans, f"{file}:{lineno}")
            problems.append(MathProblem(id=str(row.get("id", f"gsm8k-{lineno}")), question=str(row["question"]),
                                        answer=gold, kind="number", source="gsm8k"))
    else:
        ds = _load_hub("openai/gsm8k", "main", split)
        for i, row in enumerate(ds):
            problems.append(MathProblem(id=f"gsm8k-{split}-{i}", question=row["question"],
                                        answer=_gsm8k_gold(row["answer"], f"openai/gsm8k[{i}]"), kind="number",
                                        source="gsm8k"))
    return problems[:limit] if limit is not None else problems


def load_math500(file: str | Path | None = None, split: str = "test", limit: int | None = None) -> list[MathProblem]:
    """MATH-500 problems from a JSONL file of {"problem", "answer"} (optional "subject", "level",
    "unique_id") or, without a file, from the hub (`HuggingFaceH4/MATH-500`)."""
    rows = _read_jsonl(file, ("problem", "answer")) if file is not None else list(
        enumerate(_load_hub("HuggingFaceH4/MATH-500", None, split)))
    problems = []
    for key, row in rows:
        meta = {k: row[k] for k in ("subject", "level") if k in row}
        problems.append(MathProblem(id=str(row.get("unique_id") or row.get("id") or f"math500-{key}"),
                                    question=str(row["problem"]), answer=str(row["answer"]), kind="latex",
                                    source="math500", meta=meta))
    return problems[:limit] if limit is not None else problems


def detect_benchmark_file(path: str | Path) -> str:
    """"gsm8k" or "math500" from the fields of a JSONL file's first row."""
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BenchmarkDataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from e
                if isinstance(row, dict) and "problem" in row:
                    return "math500"
                if isinstance(row, dict) and "question" in row:
                    return "gsm8k"
                raise BenchmarkDataError(f"{path}:{lineno}: expected GSM8K fields (question, answer) or "
                                         "MATH-500 fields (problem, answer)")
    raise BenchmarkDataError(f"{path}: no rows (the file is empty)")
