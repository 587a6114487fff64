"""LLM endpoints: an OpenAI-compatible client and server, and the judge-backend plumbing.

* `ChatClient`: a chat-completions client on the standard library (urllib), with retries.
* `JudgeBackend`: what an LLM judge talks to, a `.complete(messages) -> str` client or a local
  model generating with `opct.generation.generate`; `LLMSafetyJudge` and `StrongRejectJudge`
  both take one through it.
* `opct serve MODEL`: an OpenAI-compatible HTTP server over a local model (`add_serve`).
* `add_judge_backend_args` / `judge_backend_from_args`: the `--judge-model/--judge-base-url/
  --judge-api-key` flags shared by every eval command that needs an LLM judge.

Base URL rule (client and flags): the base URL is the API root that ``/chat/completions`` and
``/models`` hang off, as in the OpenAI SDK (``https://api.openai.com/v1``,
``http://127.0.0.1:8000/v1``). A URL with no path at all (``http://127.0.0.1:8000``) gets ``/v1``
appended; any other path is kept as given, and a full ``.../chat/completions`` URL is cut back to
its root.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any
from opct.errors import UserError

DEFAULT_LOCAL_JUDGE = "embedded:qwen2.5-0.5b-instruct"
ENV_BASE_URL = ("OPCT_JUDGE_BASE_URL", "OPENAI_BASE_URL")
ENV_MODEL = ("OPCT_JUDGE_MODEL",)
ENV_API_KEY = ("OPCT_JUDGE_API_KEY", "OPENAI_API_KEY")


def _env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def normalize_base_url(url: str) -> str:
    """The API root for `url` (see the module docstring for the rule)."""
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"base URL {url!r}: expected http(s)://host[:port][/path], e.g. http://127.0.0.1:8000/v1")
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/models"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if not path:
        path = "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


# ---------------------------------------------------------------------------------- client
class ChatClientError(UserError):
    """An endpoint that refused the request, gave up after retries, or replied in the wrong shape."""


_RETRY_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx


class ChatClient:
    """OpenAI-compatible chat completions over urllib.

    Unset arguments come from the environment: base URL from ``OPCT_JUDGE_BASE_URL`` (else
    ``OPENAI_BASE_URL``), model from ``OPCT_JUDGE_MODEL``, key from ``OPCT_JUDGE_API_KEY`` (else
    ``OPENAI_API_KEY``; no key = no Authorization header). With no model name at all, the first
    id listed by ``GET {base}/models`` is used (handy with `opct serve`). `temperature` (default 0:
    judges want repeatable answers) and `max_tokens` (default: the server's) are sent with every
    request unless None; `complete(..., temperature=..., max_tokens=...)` overrides them per call.

    Connection errors, timeouts, 408/409/425/429 and 5xx are retried `max_retries` times with
    exponential backoff (``backoff * 2**attempt`` seconds, or the server's Retry-After, capped
    at 60 s); any other error status or a malformed reply raises `ChatClientError`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        *,
        max_retries: int = 3,
        backoff: float = 1.0,
    ):
        url = base_url or _env(ENV_BASE_URL)
        if not url:
            raise ValueError(
                "ChatClient needs a base URL: pass base_url= (or --judge-base-url), or set OPCT_JUDGE_BASE_URL "
                "(or OPENAI_BASE_URL)"
            )
        self.base_url = normalize_base_url(url)
        self._model = model or _env(ENV_MODEL)
        self.api_key = api_key or _env(ENV_API_KEY)
        self.timeout = float(timeout)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, model={self._model!r})"

    @property
    def model(self) -> str:
        """The model name sent with each request (asked of the server once when not given)."""
        if not self._model:
            reply = self.request_json("GET", "/models")
            data = reply.get("data") if isinstance(reply, dict) else None
            ids = [m.get("id") for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
            if not ids:
                raise ChatClientError(
                    f"no model name given and {self.base_url}/models lists none; pass model= (--judge-model) "
                    "or set OPCT_JUDGE_MODEL"
                )
            self._model = ids[0]
        return self._model

    def complete(self, messages: list[dict[str, Any]], **overrides: Any) -> str:
        """The content of the first choice for a chat conversation."""
        body: dict[str, Any] = {"model": self.model, "messages": list(messages)}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body.update({k: v for k, v in overrides.items() if v is not None})
        reply = self.request_json("POST", "/chat/completions", body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise ChatClientError(
                f"malformed reply from {self.base_url}/chat/completions: no choices[0].message.content string in "
                f"{_excerpt(json.dumps(reply))}"
            )
        return content

    def request_json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One JSON request with retries; the decoded reply."""
        url = self.base_url + path
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": "opct-chat-client"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        tries = self.max_retries + 1
        for attempt in range(tries):
            wait = self.backoff * (2 ** attempt) * (1 + 0.1 * random.random())
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    text = resp.read().decode("utf-8", errors="replace")
                break
            except urllib.error.HTTPError as e:
                excerpt = _excerpt(e.read().decode("utf-8", errors="replace"))
                problem = f"{method} {url} -> HTTP {e.code}: {excerpt}"
                if not (e.code in _RETRY_STATUS or e.code >= 500):
                    raise ChatClientError(problem) from None
                wait = _retry_after(e.headers.get("Retry-After"), wait)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", None) or e
                problem = f"{method} {url}: {type(reason).__name__}: {reason}"
            if attempt + 1 < tries:
                time.sleep(min(wait, 60.0))
        else:
            raise ChatClientError(f"gave up after {tries} tries; last error: {problem}")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ChatClientError(f"malformed reply from {method} {url}: not JSON: {_excerpt(text)}") from None


def _excerpt(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header else default
    except ValueError:
        return default  # an HTTP date: keep the backoff


# ---------------------------------------------------------------------------------- judge backend
class JudgeBackend:
    """The LLM behind a judge. `backend` is one of: an object with ``.complete(messages) -> str``
    (an API client such as `ChatClient`); a ``(model, tokenizer)`` pair, or a model with
    ``tokenizer=``; or a model spec string for `opct.models.load_model`."""

    def __init__(self, backend: Any, tokenizer: Any = None, owner: str = "judge"):
        self.client = self.model = self.tokenizer = None
        if isinstance(backend, str):
            from opct.models import load_model

            self.model, self.tokenizer = load_model(backend)
            self.spec = backend
        elif isinstance(backend, tuple) and len(backend) == 2:
            self.model, self.tokenizer = backend
        elif callable(getattr(backend, "complete", None)):
            self.client = backend
        elif tokenizer is not None and hasattr(backend, "generate"):
            self.model, self.tokenizer = backend, tokenizer
        else:
            raise TypeError(
                f"{owner} needs an object with .complete(messages) -> str, a (model, tokenizer) pair, "
                f"a model with tokenizer=..., or a model spec string; got {type(backend).__name__}"
            )

    @property
    def name(self) -> str:
        """The judge model's name, part of every judge's cache identity."""
        if self.client is not None:
            for attr in ("model", "model_name", "name"):
                value = getattr(self.client, attr, None)
                if isinstance(value, str) and value:
                    return value
            return type(self.client).__name__
        name = getattr(self.model, "name_or_path", None) or getattr(self.model.config, "name_or_path", None)
        return str(name or getattr(self, "spec", None) or "local-model")

    def complete(
        self,
        conversations: list[list[dict[str, str]]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        num_samples: int = 1,
        batch_size: int = 8,
        progress: bool | str = False,
    ) -> list[list[str]]:
        """`num_samples` completions per conversation. A `ChatClient` gets the temperature and
        token limit with each call; another client is called as ``.complete(messages)``."""
        if self.client is not None:
            settings = {"temperature": temperature, "max_tokens": max_new_tokens}
            if not isinstance(self.client, ChatClient):
                settings = {}  # the plain protocol: .complete(messages)
            return [[str(self.client.complete(m, **settings)) for _ in range(num_samples)] for m in conversations]
        from opct.generation import generate

        outs = generate(self.model, self.tokenizer, conversations, max_new_tokens=max_new_tokens,
                        temperature=temperature, num_samples=num_samples, batch_size=batch_size, progress=progress)
        return [[c.text for c in row] for row in outs]


# ---------------------------------------------------------------------------------- server
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
                        f" error: {_excerpt(message, 200)}")

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





