"""P2 generation: ``TransformersGenerator.generate`` with 8 requests in one batch (how the
generation service answers a fetch of concurrent queries) vs the same 8 requests generated
one after another, in output tokens/s; plus per-request latency at 1, 4, 8 and 16
concurrent requests.

Fair baseline: sequential single-request ``generate`` is the obvious alternative to
batching; both sides use the service's own generator (default SmolLM2-135M-Instruct, its
default ``max_new_tokens``, 1 torch thread) on the same realistic RAG prompts (the latest
``rag-answer`` template with a SQuAD question, its gold passage and two passages of the same
article). Tokens/s counts only the tokens each request produced (up to its end-of-sequence
token), not padding. Latency at concurrency c: c requests arrive together and are served as
the service does, in batches of at most ``batch_records`` run back to back; a request's
latency is the end of its batch.
"""

import asyncio
import time
from collections.abc import Callable, Sequence

from bench import data
from bench.harness import Check, RowArgs, alternate, result, row_main, step
from bench.stats import latency_summary, percentile, ratio, summary
from ragops_generation.settings import GenerationSettings
from ragops_models.transformers_generator import TransformersGenerator
from ragops_shared.prompts import load_prompt

FULL = {"batch": 8, "concurrency": [1, 4, 8, 16]}
QUICK = {"batch": 2, "concurrency": [1, 2, 4]}


def serve(
    generator: TransformersGenerator, requests: Sequence[list[dict]], batch_records: int
) -> tuple[list[float], int]:
    """Serve requests that arrived together in batches of ``batch_records``, back to back.
    Returns each request's latency (ms) and the output tokens of all."""
    latencies, tokens = [], 0
    started = time.perf_counter()
    for first in range(0, len(requests), batch_records):
        batch = requests[first : first + batch_records]
        tokens += sum(g.output_tokens for g in generator.generate(batch))
        latencies += [(time.perf_counter() - started) * 1000] * len(batch)
    return latencies, tokens


def timed(call: Callable[[Sequence[list[dict]]], object], requests: Sequence[list[dict]]) -> float:
    started = time.perf_counter()
    call(requests)
    return time.perf_counter() - started


def run(args: RowArgs) -> list[dict]:
    sizes = args.pick(FULL, QUICK)
    settings = GenerationSettings()
    generator = settings.generator()
    generator.warm_up()
    prompt = load_prompt(settings.prompt_name, directory=settings.prompt_dir)
    batch = sizes["batch"]
    needed = batch * (args.repeats + 1) + max(sizes["concurrency"])
    requests = [
        prompt.render(q.question, data.rag_contexts(q, settings.context_chunks)) for q in data.questions(needed, seed=2)
    ]
    sizes.update(
        model=generator.model_name,
        max_new_tokens=settings.max_new_tokens,
        batch_records=settings.batch_records,
        prompt=f"{prompt.name} v{prompt.version}",
        torch_threads=settings.platform.torch_threads,
    )

    def requests_of(index: int) -> list[list[dict]]:  # repeat -1 is the warm-up; each round its own prompts
        first = (index + 1) * batch
        return requests[first : first + batch]

    latency_ms: dict[int, list[float]] = {c: [] for c in sizes["concurrency"]}
    input_tokens: list[int] = []

    def batched(index: int) -> float:
        started = time.perf_counter()
        generated = generator.generate(requests_of(index))
        elapsed = time.perf_counter() - started
        if index >= 0:
            latency_ms.setdefault(batch, []).extend([elapsed * 1000] * batch)
            input_tokens.extend(g.input_tokens for g in generated)
        return sum(g.output_tokens for g in generated) / elapsed

    def sequential(index: int) -> float:
        tokens, total = 0, 0.0
        for request in requests_of(index):
            started = time.perf_counter()
            tokens += generator.generate([request])[0].output_tokens
            elapsed = time.perf_counter() - started
            total += elapsed
            if index >= 0:
                latency_ms[1].append(elapsed * 1000)
        return tokens / total

    step("P2", f"{batch} requests batched vs sequential, {args.repeats} rounds after a one-request warm-up")
    # Both sides share the model: one request warms it (a whole round of each would cost a minute).
    generator.generate(requests_of(-1)[:1])
    measured = asyncio.run(alternate({"ours": batched, "baseline": sequential}, args.repeats, warmup=0))
    offset = batch * (args.repeats + 1)
    for concurrency in sizes["concurrency"]:
        if concurrency in (1, batch):
            continue  # measured above, by the sequential and the batched side
        step("P2", f"latency at concurrency {concurrency}")
        latency_ms[concurrency] = serve(generator, requests[offset : offset + concurrency], settings.batch_records)[0]

    # Where the batched time goes: the prompts' prefill alone (the same generator stopping
    # after its first token), which both sides pay once per request.
    step("P2", "prefill alone: the same rounds with max_new_tokens=1")
    prefill_only = settings.model_copy(update={"max_new_tokens": 1}).generator()
    prefill_s = [timed(prefill_only.generate, requests_of(index)) for index in range(args.repeats)]
    del prefill_only
    batched_s = [latency / 1000 for latency in latency_ms[batch][::batch]]
    prefill_share = percentile(prefill_s, 50) / percentile(batched_s, 50)

    speedup = ratio(measured["ours"], measured["baseline"])
    checks = [Check(f"batched/sequential tokens/s {speedup['median']:.2f}x >= 4x", speedup["median"] >= 4.0)]
    notes = []
    if speedup["median"] < 4.0:
        notes.append(
            f"prefill is {prefill_share:.0%} of a batch's time ({percentile(prefill_s, 50):.1f} s of "
            f"{percentile(batched_s, 50):.1f} s for {batch} prompts of ~{percentile(input_tokens, 50):.0f} tokens): "
            "it is "
            "compute-bound and already runs each prompt alone without padding, so batching saves nothing there and "
            "the sequential side pays the same; batching wins on the decode steps only (one (n, 1) step for all rows "
            "costs ~1.4x one row's, as each step reads every weight once). The fixed system prompt is ~40 of those "
            "tokens, so reusing its KV cache would save ~6% of prefill. Prefill on one core is what bounds the ratio"
        )
    by_concurrency = ", ".join(
        f"{c}: {percentile(samples, 50) / 1000:.1f}/{percentile(samples, 95) / 1000:.1f}"
        for c, samples in sorted(latency_ms.items())
        if samples
    )
    return [
        result(
            "P2",
            "generation",
            unit="tokens/s",
            better="higher",
            goal=f">= 4x tokens/s with {batch} concurrent vs sequential",
            ours=summary(measured["ours"], f"generate(batch of {batch})"),
            baseline=summary(measured["baseline"], f"{batch} x generate(1) sequential"),
            ratio=speedup,
            checks=checks,
            notes=notes,
            sizes=sizes,
            highlights=[f"latency p50/p95 (s) by concurrency: {by_concurrency}"],
            metrics={
                "latency_ms_by_concurrency": {
                    str(c): latency_summary(samples, f"concurrency {c}") for c, samples in latency_ms.items() if samples
                },
                "input_tokens_median": percentile(input_tokens, 50) if input_tokens else None,
                "prefill_s_median": round(percentile(prefill_s, 50), 3),
                "prefill_share_of_batch": round(prefill_share, 3),
            },
        )
    ]


if __name__ == "__main__":
    row_main(run)
