"""`opct serve`'s OpenAI-compatible HTTP server over a local model: POST /v1/chat/completions,
GET /v1/models, GET /health; one generation at a time, on the standard library's HTTP server."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Any

from opct.serving import text_excerpt

class BadRequest(ValueError):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


MAX_BODY_BYTES = 16 << 20
MAX_N = 16
_ROLES = ("system", "user", "assistant")


def _message_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise BadRequest(f"{where}: only text content parts are supported", "messages")
            parts.append(part["text"])
        return "".join(parts)
    raise BadRequest(f"{where}: content must be a string or a list of text parts", "messages")


def _number(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise BadRequest(f"{key} must be a number in [{lo}, {hi}], got {value!r}", key)
    return float(value)


def _integer(body: dict, key: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise BadRequest(f"{key} must be an integer {bound}, got {value!r}", key)
    return value


def parse_chat_request(body: Any, default_max_tokens: int) -> dict[str, Any]:
    """Validated generation settings from a chat-completions body; BadRequest on anything wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if body.get("stream"):
        raise BadRequest("stream=true is not supported by opct serve", "stream")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {role, content}", "messages")
    conv = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise BadRequest(f"messages[{i}]: expected an object with role in {list(_ROLES)}", "messages")
        conv.append({"role": m["role"], "content": _message_text(m.get("content"), f"messages[{i}]")})
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise BadRequest("stop must be a string or a list of non-empty strings", "stop")
    return {
        "messages": conv,
        "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
        "top_p": _number(body, "top_p", 1.0, 1e-9, 1.0),
        "max_tokens": _integer({"max_tokens": max_tokens}, "max_tokens", default_max_tokens, 1, 1 << 16),
        "n": _integer(body, "n", 1, 1, MAX_N),
        "seed": _integer(body, "seed", None, 0, 2**63 - 1),
        "stop": stop or [],
    }


class ModelServer:
    """The state behind `opct serve`: one model, a lock (one generation at a time), counters."""

    def __init__(self, model, tokenizer, model_id: str, max_new_tokens: int = 256):
        self.model, self.tokenizer, self.model_id = model, tokenizer, model_id
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()  # one generation at a time
        self._stats_lock = threading.Lock()
        self.created = int(time.time())
        self.stats = {"chat_completions": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def chat(self, body: Any) -> dict[str, Any]:
        import torch

        from opct.chat import render_prompt
        from opct.generation import generate

        req = parse_chat_request(body, self.max_new_tokens)
        try:
            prompt_tokens = len(render_prompt(self.tokenizer, req["messages"]))
        except Exception as e:  # the chat template rejects these messages (roles, order)
            raise BadRequest(f"the model's chat template cannot render these messages: {e}", "messages") from None
        with self.lock:
            if req["seed"] is not None:
                torch.manual_seed(req["seed"])
            (samples,) = generate(self.model, self.tokenizer, [req["messages"]], max_new_tokens=req["max_tokens"],
                                  temperature=req["temperature"], top_p=req["top_p"], num_samples=req["n"],
                                  batch_size=req["n"])
        choices, completion_tokens = [], 0
        for i, c in enumerate(samples):
            text, reason = c.text, "stop" if c.finished else "length"
            cuts = [text.find(s) for s in req["stop"] if s in text]
            if cuts:
                text, reason = text[: min(cuts)], "stop"
            completion_tokens += len(c.token_ids)
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "finish_reason": reason, "logprobs": None})
        self.count(chat_completions=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_id, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def count(self, **deltas: int) -> None:
        with self._stats_lock:
            for k, v in deltas.items():
                self.stats[k] += v

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": self.created,
                                            "owned_by": "opct"}]}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.model_id, **self.stats}


def _handler_class(state: ModelServer):
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        server_version = "opct-serve"
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # the default access log is replaced by _reply's line
            pass

        def _path(self) -> str:
            path = urllib.parse.urlsplit(self.path).path.rstrip("/")
            return path[3:] if path.startswith("/v1/") else path

        def _reply(self, status: int, payload: dict[str, Any], note: str = "") -> None:
            data = json.dumps(payload).encode("utf-8")
            if status >= 400:  # counted before the reply leaves, so a client's next /health sees it
                state.count(errors=1)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            took = time.time() - self._start
            print(f"{self.command} {self.path} {status} {took:.2f}s{note}", flush=True)

        def _error(self, status: int, message: str, kind: str = "invalid_request_error", param=None) -> None:
            self._reply(status, {"error": {"message": message, "type": kind, "param": param, "code": None}},
                        f" error: {text_excerpt(message, 200)}")

        def do_GET(self):
            self._start = time.time()
            path = self._path()
            if path == "/models":
                self._reply(200, state.models())
            elif path == "/health":
                self._reply(200, state.health())
            else:
                self._error(404, f"no such endpoint: GET {self.path} (try /v1/models or /health)")

        def do_POST(self):
            self._start = time.time()
            path = self._path()
            length = self.headers.get("Content-Length")
            try:
                size = int(length) if length is not None else -1
            except ValueError:
                size = -1
            if size < 0:
                self.close_connection = True
                return self._error(411, "a Content-Length header is required")
            if size > MAX_BODY_BYTES:
                self.close_connection = True
                return self._error(413, f"request body over {MAX_BODY_BYTES} bytes")
            raw = self.rfile.read(size)
            if path != "/chat/completions":
                return self._error(404, f"no such endpoint: POST {self.path} (try /v1/chat/completions)")
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                return self._error(400, f"the request body is not valid JSON: {e}")
            try:
                reply = state.chat(body)
            except BadRequest as e:
                return self._error(e.status, str(e), param=e.param)
            except Exception as e:  # the client gets the error's name, the server log its traceback
                import traceback

                traceback.print_exc(file=sys.stderr)
                return self._error(500, f"generation failed: {type(e).__name__}: {e}", kind="server_error")
            usage = reply["usage"]
            self._reply(200, reply, f" prompt={usage['prompt_tokens']} completion={usage['completion_tokens']}")

    return Handler


def make_server(state: ModelServer, host: str = "127.0.0.1", port: int = 8000):
    """A bound (not yet serving) ThreadingHTTPServer; port 0 picks a free port."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer((host, port), _handler_class(state))
    server.daemon_threads = True
    return server





