"""LLM endpoints: an OpenAI-compatible client and the judge-backend plumbing.

* `ChatClient`: a chat-completions client on the standard library (urllib), with retries.
* `JudgeBackend`: what an LLM judge talks to, a `.complete(messages) -> str` client or a local
  model generating with `opct.generation.generate`; `LLMSafetyJudge` and `StrongRejectJudge`
  both take one through it.
The server behind `opct serve` is `opct.server`; the judge-backend flags are in `opct.commands.common`.

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
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from opct.defaults import DECODE_BATCH
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
                f"{text_excerpt(json.dumps(reply))}"
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
                excerpt = text_excerpt(e.read().decode("utf-8", errors="replace"))
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
            raise ChatClientError(f"malformed reply from {method} {url}: not JSON: {text_excerpt(text)}") from None


def text_excerpt(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header else default
    except ValueError:
        return default  # an HTTP date: keep the backoff


# ---------------------------------------------------------------------------------- judge backend
def is_endpoint(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def client_or_spec(spec: str) -> "ChatClient | str":
    """A `ChatClient` for an endpoint URL (http:// or https://), else the string as a model spec."""
    return ChatClient(spec) if is_endpoint(spec) else spec


def check_backend(spec: str) -> None:
    """Raise now for a model spec that `load_model` would refuse when the judge first runs (an
    endpoint URL is only reached then)."""
    if not is_endpoint(spec):
        from opct.models import check_spec

        check_spec(spec)


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
        batch_size: int = DECODE_BATCH,
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
