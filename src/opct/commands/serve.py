"""`opct serve`: a model behind an OpenAI-compatible HTTP API (`opct.server`)."""

from __future__ import annotations

def add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API (e.g. as an LLM judge)",
        description="Loads MODEL and answers POST /v1/chat/completions (messages, temperature, top_p, max_tokens, "
        "n, seed, stop; OpenAI-shaped replies with finish_reason and usage) and GET /v1/models; GET /health "
        "reports request and token counts. One generation runs at a time. Point a judge at it with "
        "--judge-base-url http://HOST:PORT/v1 (or OPCT_JUDGE_BASE_URL). No authentication: keep the default "
        "host 127.0.0.1 unless the network is trusted.",
        epilog="model specs: embedded:qwen2.5-0.5b-instruct, embedded:smollm2-135m-instruct, a local HF model or "
        "adapter folder, an opct run directory, or a hub id. Example: opct serve embedded:qwen2.5-0.5b-instruct "
        "--port 8000",
    )
    p.add_argument("model", metavar="MODEL", help="model spec to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    p.add_argument("--max-new-tokens", type=int, default=256,
                   help="completion length when a request sets no max_tokens (default: %(default)s)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    from opct.errors import UsageError
    from opct.models import load_model
    from opct.server import ModelServer, make_server

    if a.max_new_tokens < 1:
        raise UsageError("--max-new-tokens must be >= 1")
    model, tokenizer = load_model(a.model)
    state = ModelServer(model, tokenizer, model_id=a.model, max_new_tokens=a.max_new_tokens)
    try:
        server = make_server(state, a.host, a.port)
    except OSError as e:
        raise UsageError(f"cannot listen on {a.host}:{a.port}: {e}") from None
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"opct serve: {a.model} at http://{shown}:{port}/v1 (POST /v1/chat/completions, GET /v1/models, "
          "GET /health; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("opct serve: stopped", flush=True)
    finally:
        server.server_close()
    return 0
