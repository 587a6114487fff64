"""opct.kernels: fp32 linears without gradients on oneDNN, everything else as before."""

import copy

import pytest
import torch
from conftest import build_tiny_model, build_tiny_tokenizer

from opct.errors import UserError
from opct.kernels import OneDNNLinear, onednn_is_preferred, onednn_linears

pytestmark = pytest.mark.skipif(not (torch.backends.mkldnn.is_available()
                                     and hasattr(torch.ops.mkldnn, "_linear_pointwise")),
                                reason="this torch has no oneDNN linear")


def onednn_calls(fn) -> int:
    with torch.profiler.profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "mkldnn::_linear_pointwise")


def test_the_environment_overrides_the_rule(monkeypatch):
    monkeypatch.setenv("OPCT_ONEDNN", "1")
    assert onednn_is_preferred()
    monkeypatch.setenv("OPCT_ONEDNN", "0")
    assert not onednn_is_preferred()
    model = onednn_linears(build_tiny_model(build_tiny_tokenizer()))
    assert not any(isinstance(m, OneDNNLinear) for m in model.modules())
    monkeypatch.setenv("OPCT_ONEDNN", "on")
    with pytest.raises(UserError, match="OPCT_ONEDNN must be 0 or 1"):
        onednn_is_preferred()


def test_no_grad_calls_run_on_onednn_with_the_same_logits_and_greedy_tokens():
    from opct.generation import generate_ids

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    plain = build_tiny_model(tok)
    fast = onednn_linears(copy.deepcopy(plain), enabled=True)
    linears = [m for m in fast.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is OneDNNLinear for m in linears)
    assert onednn_linears(fast, enabled=True) is fast  # idempotent
    ids = torch.tensor([tok("the cat sat on the mat")["input_ids"]])
    with torch.no_grad():
        expected = plain(input_ids=ids).logits
        assert onednn_calls(lambda: fast(input_ids=ids)) >= len(linears)
        torch.testing.assert_close(fast(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
    prompts = [tok("hello there, how are you")["input_ids"], tok("one two")["input_ids"]]
    assert ([c.token_ids for c in generate_ids(fast, tok, prompts, max_new_tokens=8, bf16=False)]
            == [c.token_ids for c in generate_ids(plain, tok, prompts, max_new_tokens=8, bf16=False)])


def test_calls_that_need_gradients_or_run_under_autocast_are_unchanged():
    from opct.models import add_lora

    torch.manual_seed(0)
    layer = onednn_linears(torch.nn.Sequential(torch.nn.Linear(8, 4)), enabled=True)[0]
    x = torch.randn(4, 8, requires_grad=True)
    assert onednn_calls(lambda: layer(x).sum().backward()) == 0  # the input needs a gradient
    layer.requires_grad_(False)
    assert onednn_calls(lambda: layer(x.detach())) == 1  # nothing does
    assert onednn_calls(lambda: layer(x.detach()[:1])) == 0  # one row: MKL is faster there
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert onednn_calls(lambda: layer(x)) == 0 and layer(x).dtype == torch.bfloat16

    tok = build_tiny_tokenizer()
    plain = add_lora(build_tiny_model(tok), r=4, alpha=8)
    fast = onednn_linears(copy.deepcopy(plain), enabled=True)  # LoRA's base layers become OneDNNLinear
    assert any(type(m) is OneDNNLinear for m in fast.modules())
    ids = torch.tensor([tok("the cat sat on the mat")["input_ids"]])
    for model in (plain, fast):
        model(input_ids=ids, labels=ids).loss.backward()
    grads = {n: p.grad for n, p in plain.named_parameters() if p.requires_grad}
    assert grads
    for n, p in fast.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], atol=1e-5, rtol=1e-4)
