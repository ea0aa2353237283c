"""Answer generation through an OpenAI-compatible HTTP API (``POST {base_url}/chat/completions``).

vLLM, Hugging Face TGI, Ollama, llama.cpp's server and the hosted APIs all speak this
protocol, so one backend serves a GPU inference server beside the platform as well as a
hosted model. :class:`OpenAICompatibleGenerator` is a
:class:`~ragops_models.generation.Generator`, like
:class:`~ragops_models.transformers_generator.TransformersGenerator` (``model_name``,
``model_version``, :meth:`~OpenAICompatibleGenerator.warm_up`,
:meth:`~OpenAICompatibleGenerator.generate`), so the service's handler does not know which
one it runs.

A batch is sent as concurrent requests (at most ``concurrency`` in flight): the server
batches them itself (vLLM and TGI do continuous batching). A request is retried on a
transport error, a timeout, HTTP 408/409/429 or 5xx, with exponential backoff (a
``Retry-After`` header of a few seconds is honoured); any other error status fails at once.
When one request of a batch fails for good, :meth:`generate` raises
:class:`GenerationBackendError` and the service's subscriber retries the records alone, then
dead-letters them with the reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import SecretStr

from ragops_models.generation import Generation

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 30.0
_ERROR_BODY_CHARS = 500


class GenerationBackendError(RuntimeError):
    """The inference server refused a request or could not be reached (after the retries).

    Attributes:
        status_code: the last HTTP status, or ``None`` when no response came (connection
            error, timeout).
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class OpenAICompatibleGenerator:
    """Chat completions from an OpenAI-compatible server, one HTTP request per chat.

    The constructor only stores the configuration; :meth:`warm_up` builds the HTTP client and
    checks that the server answers. Thread-safe: :meth:`generate` may be called from worker
    threads (``asyncio.to_thread``).

    Attributes:
        model_name: the ``model`` sent in every request and recorded as ``gen_ai.request.model``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | SecretStr | None = None,
        max_new_tokens: int = 48,
        temperature: float = 0.0,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        retry_backoff_s: float = 0.5,
        concurrency: int = 8,
        model_version: str | None = None,
        stop: Sequence[str] = (),
    ) -> None:
        """Store the configuration; nothing is contacted.

        Args:
            base_url: the API root including its version path, e.g. ``http://vllm:8000/v1``,
                ``http://ollama:11434/v1``, ``https://api.openai.com/v1``.
            model: the model id the server knows (vLLM's ``--served-model-name``, an Ollama tag).
            api_key: sent as ``Authorization: Bearer <key>``; ``None`` sends no header.
            max_new_tokens: ``max_tokens`` of each request.
            temperature: 0.0 asks for greedy decoding.
            timeout_s: the longest wait for one response (connect, write and each read).
            max_retries: further attempts after a retryable failure.
            retry_backoff_s: the first backoff; doubled after each failed attempt.
            concurrency: the most requests in flight for one batch.
            model_version: recorded as the generation model version; ``None`` =
                ``"<model>@<server host>"`` (a remote server does not say which weights it
                serves, so pin a version, e.g. the checkpoint's revision, where it matters).
            stop: the request's ``stop`` sequences (OpenAI allows up to 4); empty sends none.

        Raises:
            ValueError: an empty ``base_url`` or ``model``, or a number out of range.
        """
        if not base_url or not model:
            raise ValueError("base_url and model are required")
        if max_new_tokens < 1 or concurrency < 1 or max_retries < 0 or timeout_s <= 0 or temperature < 0:
            raise ValueError(
                "max_new_tokens and concurrency must be >= 1, max_retries >= 0, timeout_s > 0, temperature >= 0"
            )
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self._max_new_tokens = max_new_tokens
        self._temperature = temperature
        self._stop = list(stop)
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self._max_retries = max_retries
        self._retry_backoff_s = retry_backoff_s
        self._concurrency = concurrency
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self.model_name = model
        self._model_version = model_version or f"{model}@{urlsplit(self._base_url).netloc}"

    @property
    def model_version(self) -> str:
        """The configured ``model_version``, else ``"<model>@<server host:port>"``."""
        return self._model_version

    def warm_up(self) -> None:
        """Build the HTTP client and check the server answers ``GET {base_url}/models``.

        A server that does not list ``model`` only gets a warning (some list aliases, TGI
        lists one fixed name). Later calls return at once.

        Raises:
            GenerationBackendError: the server cannot be reached, or refuses the API key
                (HTTP 401/403), after the retries.
        """
        with self._lock:
            if self._client is not None:
                return
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            client = httpx.Client(
                timeout=self._timeout,
                headers=headers,
                limits=httpx.Limits(max_connections=self._concurrency, max_keepalive_connections=self._concurrency),
            )
            try:
                response = self._send(client, "GET", "/models", None)
            except GenerationBackendError as error:
                if error.status_code in {404, 405}:  # a server without a model listing
                    response = None
                else:
                    client.close()
                    raise
            if response is not None:
                listed = {entry.get("id") for entry in response.get("data", []) if isinstance(entry, dict)}
                if self.model_name not in listed:
                    log.warning(
                        "model not listed by the server",
                        base_url=self._base_url,
                        model=self.model_name,
                        listed=sorted(map(str, listed)),
                    )
            self._client = client
            log.info("generation backend ready", base_url=self._base_url, model=self.model_name)

    def close(self) -> None:
        """Close the HTTP client (a later :meth:`generate` opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def generate(self, batch: Sequence[list[dict[str, str]]]) -> list[Generation]:
        """Answer a batch of chat requests, sent concurrently; results in request order.

        Each request is a list of chat messages (``{"role": ..., "content": ...}``).
        ``input_tokens``/``output_tokens`` come from the response's ``usage``
        (``prompt_tokens``/``completion_tokens``; 0 when a server omits it) and
        ``finish_reason`` from the choice (``"stop"``, ``"length"``, or what the server says).

        Raises:
            ValueError: the batch is empty, or a request has no messages.
            GenerationBackendError: a request failed after the retries, or the response has
                no choice.
        """
        if not batch:
            raise ValueError("generate() needs at least one request")
        if any(not messages for messages in batch):
            raise ValueError("every request needs at least one chat message")
        self.warm_up()
        client = self._client
        assert client is not None
        if len(batch) == 1:
            return [self._complete(client, batch[0])]
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(batch)), thread_name_prefix="openai") as pool:
            return list(pool.map(lambda messages: self._complete(client, messages), batch))

    def _complete(self, client: httpx.Client, messages: list[dict[str, str]]) -> Generation:
        body = {
            "model": self.model_name,
            "messages": messages,
            "max_tokens": self._max_new_tokens,
            "temperature": self._temperature,
            "n": 1,
            "stream": False,
        }
        if self._stop:
            body["stop"] = self._stop
        response = self._send(client, "POST", "/chat/completions", body)
        choices = response.get("choices") or []
        if not choices:
            raise GenerationBackendError(
                f"{self._base_url}/chat/completions answered without a choice: {str(response)[:_ERROR_BODY_CHARS]}"
            )
        choice = choices[0]
        content = (choice.get("message") or {}).get("content") or ""
        usage = response.get("usage") or {}
        return Generation(
            text=content.strip(),
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=str(choice.get("finish_reason") or "stop"),
        )

    def _send(self, client: httpx.Client, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One call with retries; returns the JSON object of a 2xx response."""
        url = f"{self._base_url}{path}"
        backoff = self._retry_backoff_s
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                response = client.request(method, url, json=body)
            except httpx.TransportError as error:  # connection refused/reset, timeouts
                if last:
                    raise GenerationBackendError(
                        f"{method} {url} failed after {attempt + 1} attempts: {error!r}"
                    ) from error
                log.warning("request failed, retrying", method=method, url=url, error=repr(error), retry_in_s=backoff)
            else:
                if response.is_success:
                    try:
                        payload = response.json()
                    except ValueError as error:
                        raise GenerationBackendError(
                            f"{method} {url}: the response is not JSON", response.status_code
                        ) from error
                    if not isinstance(payload, dict):
                        raise GenerationBackendError(
                            f"{method} {url}: the response is not a JSON object", response.status_code
                        )
                    return payload
                detail = f"{method} {url}: HTTP {response.status_code}: {response.text[:_ERROR_BODY_CHARS]}"
                if response.status_code not in RETRYABLE_STATUS or last:
                    raise GenerationBackendError(detail, response.status_code)
                backoff = max(backoff, _retry_after(response))
                log.warning(
                    "request refused, retrying",
                    method=method,
                    url=url,
                    status=response.status_code,
                    # Not the body: a server's error can quote the prompt (questions, contexts).
                    body_chars=len(response.text),
                    retry_in_s=backoff,
                )
            time.sleep(backoff)
            backoff *= 2
        raise AssertionError("unreachable")  # the last attempt returns or raises


def _retry_after(response: httpx.Response) -> float:
    """Seconds of a ``Retry-After: <seconds>`` header (capped), 0 when absent or a date."""
    try:
        return min(float(response.headers.get("retry-after", 0)), _MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0
