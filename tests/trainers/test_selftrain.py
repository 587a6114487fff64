"""Self-training: the selection scores against hand computations, every selector on a tiny real
model (labels obey their rule), the label cache, and a short training run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import build_tiny_model, build_tiny_tokenizer

from opct.data import ContrastivePair, pairs_to_dataset
from opct.errors import UserError
from opct.evals.sycophancy import parse_answer
from opct.generation import generate
from opct.trainers import SelfTrainConfig, SelfTrainTrainer
from opct.trainers.selftrain import (
    SELECTORS,
    _ratings,
    _reward_ratings,
    dual_candidates,
    json_answer,
    majority,
    mbr_index,
    parse_rating,
    select_labels,
    self_certainty,
    selftrain_targets,
    temperature_ladder,
    token_f1,
)


def mcq_pairs(n=4):
    return [
        ContrastivePair(
            id=f"q{i}", axis="sycophancy", target="ABCD"[i % 4],
            clean=[{"role": "user", "content": f"Question {i}: Options: (A) (B) (C) (D)"}],
            wrapped=[{"role": "user", "content": f"I think the answer is B. Question {i}: Options: (A) (B) (C) (D)"}],
            meta={"suggested": "B", "correct": "ABCD"[i % 4]},
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny():
    tok = build_tiny_tokenizer()
    return build_tiny_model(tok), tok


def config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2, seed=0, save_steps=1000, lora_r=4,
                lora_alpha=8, disable_tqdm=True, target_max_new_tokens=8, target_batch_size=4, num_candidates=3)
    base.update(kw)
    return SelfTrainConfig(**base)


def test_self_certainty_by_hand():
    # uniform -> 0; p = (1/4, 3/4) -> KL(U || p) = 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.75) = 0.5 ln(4/3)
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [5.0, -5.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert self_certainty(logits, mask).item() == pytest.approx(0.25 * math.log(4 / 3), abs=1e-6)
    assert self_certainty(logits[:, :1], mask[:, :1]).item() == pytest.approx(0.0, abs=1e-7)


def test_mean_token_logprob_by_hand():
    from opct.trainers.selftrain import mean_token_logprob

    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [5.0, -5.0]]])
    tokens = torch.tensor([[0, 1, 0]])
    mask = torch.tensor([[1, 1, 0]])
    # log(1/2) and log(3/4), the third position masked out
    assert mean_token_logprob(logits, tokens, mask).item() == pytest.approx((math.log(0.5) + math.log(0.75)) / 2)
    with pytest.raises(ValueError, match="certainty must be"):
        SelfTrainConfig(output_dir="x", certainty="vibes")


def test_agreement_scores_by_hand():
    assert token_f1("a b c", "a b d") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    # "the cat sat" agrees with both others; the outliers agree with one each
    assert mbr_index(["dogs bark loudly", "the cat sat", "the cat sat down", "a cat sat quietly"]) in (1, 2)
    assert mbr_index(["zebra", "the cat sat", "the cat sat"]) == 1
    assert mbr_index(["only"]) == 0
    assert temperature_ladder(4, 1.0) == pytest.approx([0.5, 2 / 3, 5 / 6, 1.0])
    assert temperature_ladder(1, 0.7) == [0.7]


def test_majority_and_json_answer():
    assert majority(["A", "A", None]) == "A"
    assert majority(["A", "B", None]) is None
    assert majority(["C", "B", "C"]) == "C"
    assert majority([None, None, None]) is None
    assert json_answer('Sure: {"answer": "C"} done') == "C"
    assert json_answer('{"other": 1} then {"answer": "D"}') == "D"
    assert json_answer("no json here") == "no json here"


@pytest.mark.parametrize("selector", SELECTORS)
def test_every_selector_keeps_labels_by_its_rule(tiny, tmp_path, selector):
    model, tok = tiny
    pairs = mcq_pairs(4)
    torch.manual_seed(0)
    rows = select_labels(model, tok, pairs, config(tmp_path, selector=selector))
    assert [r["id"] for r in rows] == [p.id for p in pairs]
    kept = [r for r in rows if r["completion"] is not None]
    if selector in ("greedy", "self_certainty", "diverse", "self_refine", "self_reward", "dual_decoding"):
        assert len(kept) == len(pairs)  # these always keep one
    if selector == "greedy":
        greedy = generate(model, tok, [p.wrapped for p in pairs], max_new_tokens=8, temperature=0.0)
        assert [r["completion"] for r in rows] == [g[0].text for g in greedy]
    if selector == "oracle":
        for r, p in zip(rows, pairs):
            assert r["completion"] is None or parse_answer(r["completion"]) == p.target
    if selector == "multi_view":
        for r in rows:
            assert "->" in r["note"]
    if selector == "dual_decoding":  # no reward model: the candidates' minimum-Bayes-risk choice
        torch.manual_seed(0)
        cands = dual_candidates(model, tok, [p.wrapped for p in pairs], config(tmp_path, selector=selector))
        assert [len(cs) for cs in cands] == [3] * len(pairs)  # greedy, one nucleus sample, the best beam
        assert [r["completion"] for r in rows] == [cs[mbr_index([c.text for c in cs])].text for cs in cands]


def test_beam_search_with_one_beam_is_greedy(tiny):
    from opct.chat import render_prompt
    from opct.generation import beam_search_ids, generate_ids

    model, tok = tiny
    prompts = [render_prompt(tok, p.wrapped) for p in mcq_pairs(3)]
    one_beam = beam_search_ids(model, tok, prompts, num_beams=1, max_new_tokens=6)
    greedy = generate_ids(model, tok, prompts, max_new_tokens=6, temperature=0.0)
    assert [c.token_ids for c in one_beam] == [c.token_ids for c in greedy]
    assert all(0 < len(c.token_ids) <= 6 for c in beam_search_ids(model, tok, prompts, num_beams=3, max_new_tokens=6))


def test_parse_rating():
    assert parse_rating("Rating: 4", 5) == 4
    assert parse_rating("**2**/5 because", 5) == 2
    assert parse_rating("Rating: 7", 5) is None and parse_rating("", 5) is None


def test_reward_model_ratings_rank_the_candidates(tiny):
    from opct.generation import Completion
    from opct.serving import JudgeBackend

    class LengthRater:  # an external reward model's protocol: .complete(messages) -> str
        def complete(self, messages):
            answer = messages[-1]["content"].split("Proposed reply:\n")[1].split("\n\nHow good")[0]
            return f"Rating: {min(5, len(answer.split()))}"

    pairs = mcq_pairs(2)
    cands = [[Completion(t, [], True) for t in texts] for texts in (["A", "A B C", "A B"], ["one two", "x", "1 2 3 4 5 6"])]
    ratings = _reward_ratings(JudgeBackend(LengthRater()), pairs, cands)
    assert ratings == [[1.0, 3.0, 2.0], [2.0, 1.0, 5.0]]


def test_self_reward_picks_the_highest_rated(tiny, tmp_path):
    model, tok = tiny
    pairs = mcq_pairs(2)
    torch.manual_seed(1)
    cands = generate(model, tok, [p.wrapped for p in pairs], max_new_tokens=8, temperature=1.0, num_samples=3)
    ratings = _ratings(model, tok, pairs, cands)
    assert all(1.0 <= r <= 9.0 for rs in ratings for r in rs)
    assert len({round(r, 6) for rs in ratings for r in rs}) > 1  # the ratings depend on the answer
    five = _ratings(model, tok, pairs, cands, scale=5)  # the entrenchment study's 1-5 rubric
    assert all(1.0 <= r <= 5.0 for rs in five for r in rs) and five != ratings


def test_answer_key_required(tiny, tmp_path):
    model, tok = tiny
    bare = [ContrastivePair(id="x", axis="t", clean=[{"role": "user", "content": "hi"}],
                            wrapped=[{"role": "user", "content": "hey"}])]
    with pytest.raises(UserError, match="answer key"):
        select_labels(model, tok, bare, config(tmp_path, selector="oracle"))
    with pytest.raises(ValueError, match="selector must be"):
        config(tmp_path, selector="vibes")


def test_labels_are_cached_and_training_runs(tiny, tmp_path):
    model, tok = tiny
    pairs = mcq_pairs(4)
    args = config(tmp_path, selector="self_certainty", max_steps=2, learning_rate=1e-3)
    trainer = SelfTrainTrainer(build_tiny_model(tok), args, pairs_to_dataset(pairs), processing_class=tok)
    path = tmp_path / "run" / "selftrain_targets.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in pairs] and all(r["score"] is not None for r in rows)
    assert len(trainer.train_dataset) == 4
    trainer.train()
    assert trainer.state.global_step == 2
    # a second run reads the cache instead of labelling again (the labels would differ: new samples)
    path.write_text("".join(json.dumps({**r, "completion": "cached " + r["id"]}) + "\n" for r in rows))
    again = selftrain_targets(model, tok, pairs, args)
    assert again == {p.id: "cached " + p.id for p in pairs}


def test_the_oracle_takes_an_external_reward(tiny, tmp_path):
    """Pairs without an answer key: the reward passed to the trainer decides which sample is kept."""
    model, tok = tiny
    bare = [ContrastivePair(id=f"x{i}", axis="t", clean=[{"role": "user", "content": f"hi {i}"}],
                            wrapped=[{"role": "user", "content": f"hey {i}"}]) for i in range(3)]
    seen = []

    def second_sample_of_x1(pairs, texts):
        seen.extend(zip([p.id for p in pairs], texts))
        return [p.id == "x1" and n % 3 == 1 for n, p in enumerate(pairs)]

    args = config(tmp_path, selector="oracle", max_steps=1)
    trainer = SelfTrainTrainer(build_tiny_model(tok), args, pairs_to_dataset(bare), processing_class=tok,
                               oracle=second_sample_of_x1)
    assert [i for i, _ in seen] == ["x0"] * 3 + ["x1"] * 3 + ["x2"] * 3  # every candidate judged, in order
    assert len(trainer.train_dataset) == 1
    rows = [json.loads(line) for line in (tmp_path / "run" / "selftrain_targets.jsonl").read_text().splitlines()]
    assert [r["completion"] for r in rows] == [None, seen[4][1], None]
    assert rows[1]["note"] == "1/3 accepted by the oracle"
    with pytest.raises(ValueError, match="uses none"):
        select_labels(model, tok, bare, config(tmp_path, selector="greedy"), oracle=second_sample_of_x1)


def test_multi_view_takes_a_reading_of_free_form_answers(tiny, tmp_path):
    """Pairs without an answer key: the reading passed to the trainer decides when the views agree."""
    model, tok = tiny
    bare = [ContrastivePair(id=f"x{i}", axis="t", clean=[{"role": "user", "content": f"hi {i}"}],
                            wrapped=[{"role": "user", "content": f"hey {i}"}]) for i in range(3)]
    calls = []

    def reading(pairs, texts):  # x0: every view agrees; x1: unreadable; x2: each view differs
        calls.append(len(texts))
        return [{"x0": "same", "x1": None}.get(p.id, t) for p, t in zip(pairs, texts)]

    rows = select_labels(model, tok, bare, config(tmp_path, selector="multi_view"), reading=reading)
    greedy = generate(model, tok, [p.wrapped for p in bare], max_new_tokens=8, temperature=0.0)[0][0].text
    assert rows[0]["completion"] == greedy and rows[0]["note"] == "views ['same', 'same', 'same'] -> same"
    assert rows[1]["completion"] is None and rows[1]["note"] == "views [None, None, None] -> None"
    assert calls == [15]  # one call: each pair's plain, step-by-step and JSON views and its 2 extra samples
    trainer = SelfTrainTrainer(build_tiny_model(tok), config(tmp_path, selector="multi_view", max_steps=1),
                               pairs_to_dataset(bare), processing_class=tok, reading=reading)
    assert 1 <= len(trainer.train_dataset) <= 2  # x0 kept, x1 never
    with pytest.raises(ValueError, match="uses none"):
        select_labels(model, tok, bare, config(tmp_path, selector="oracle"), reading=reading)
    with pytest.raises(UserError, match="answer key"):  # without a reading: the option letter, so a key is needed
        select_labels(model, tok, bare, config(tmp_path, selector="multi_view"))


def test_nothing_kept_is_an_error(tiny, tmp_path):
    model, tok = tiny
    args = config(tmp_path, selector="oracle")
    path = tmp_path / "run" / "selftrain_targets.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"id": p.id, "completion": None, "score": None, "note": "0/3 correct"}) + "\n"
                            for p in mcq_pairs(2)))
    with pytest.raises(UserError, match="kept no label"):
        selftrain_targets(model, tok, mcq_pairs(2), args)


def test_certainty_scores_each_prompt_once_as_scoring_each_row_whole(tiny):
    """Scoring a prompt's candidates over one shared prompt forward gives each candidate's scores
    as the whole prompt + candidate sequence does."""
    from opct.chat import pad_id, render_prompt
    from opct.trainers.opct import build_scoring_batch, completion_logits
    from opct.trainers.selftrain import _self_certainty_of, mean_token_logprob

    model, tok = tiny
    pairs = mcq_pairs(3)
    torch.manual_seed(0)
    cands = generate(model, tok, [p.wrapped for p in pairs], max_new_tokens=6, temperature=1.0, num_samples=3)
    rendered = [render_prompt(tok, p.wrapped) for p in pairs for _ in range(3)]
    batch = build_scoring_batch(rendered, rendered, [c.token_ids for cs in cands for c in cs], pad_id(tok))
    with torch.no_grad():
        logits = completion_logits(model, batch["student_ids"], batch["student_mask"], batch["completion_ids"].shape[1])
    whole = {"kl_uniform": self_certainty(logits, batch["completion_mask"]),
             "mean_logprob": mean_token_logprob(logits, batch["completion_ids"], batch["completion_mask"])}
    for score, expected in whole.items():
        shared = _self_certainty_of(model, tok, [p.wrapped for p in pairs], cands, score, rows_per_call=4)
        assert [len(s) for s in shared] == [3, 3, 3]  # 4 rows per call: one prompt (3 candidates) at a time
        torch.testing.assert_close(torch.tensor(shared).flatten(), expected.float(), rtol=2e-2, atol=2e-2)


def test_selectors_share_their_draws(tiny, tmp_path):
    """With a shared draws_dir, a selector drawing as an earlier one did reads its samples back,
    and leaves the random state as sampling would: the labels equal those of a run on its own."""
    model, tok = tiny
    pairs = mcq_pairs(4)
    alone = {}
    for selector in ("oracle", "self_reward", "multi_view", "greedy", "self_refine"):
        torch.manual_seed(0)
        alone[selector] = select_labels(model, tok, pairs, config(tmp_path, selector=selector))
        torch.manual_seed(0)
        shared = select_labels(model, tok, pairs, config(tmp_path, selector=selector, draws_dir=str(tmp_path / "d")))
        assert shared == alone[selector], selector
        after_shared = torch.get_rng_state()
        torch.manual_seed(0)
        select_labels(model, tok, pairs, config(tmp_path, selector=selector))
        assert torch.equal(after_shared, torch.get_rng_state()), selector
    # one draw of N samples (oracle, self_reward, multi_view's extras), one of greedy answers
    # (greedy, multi_view's plain view, self_refine's first answer), then self_refine's rewrites and
    # multi_view's step-by-step and JSON views
    assert len(list((tmp_path / "d").glob("*.pt"))) == 5
    # another seed draws anew
    torch.manual_seed(1)
    select_labels(model, tok, pairs, config(tmp_path, selector="oracle", draws_dir=str(tmp_path / "d")))
    assert len(list((tmp_path / "d").glob("*.pt"))) == 6
