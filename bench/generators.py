"""The generator comparison (``make bench-generators``): which packaged local model answers
best, scored by the platform's own evaluation functions.

Each arm (a :data:`~ragops_models.defaults.GenerationPreset` with a ``rag-answer`` prompt
version) runs in its own subprocess (``python -m bench.generators --arm PRESET:VERSION``), so
its peak resident memory (``ru_maxrss``) is that model's alone; a first subprocess per preset
only converts the GGUF into the platform's cache, so the conversion's peak is not counted.
Every arm answers the same seeded sample of answerable questions of
``../shared/data/questions.jsonl`` with the same contexts: the gold passage followed by two
passages of the same article (:func:`bench.data.rag_contexts`, hard distractors), i.e. no
index is built, which keeps the study's CPU to the generation itself. Questions are answered
in batches of ``--batch`` as the generation service does; a question's latency is its batch's
wall time divided by the batch size (the time the service spends per question).

Scores: ``ragops_evaluation.metrics`` token F1, exact match and contains-a-gold-answer
(SQuAD v1.1 normalisation) against every gold answer; an empty answer scores 0 and is counted
as no answer. Writes ``generators-report.json`` and ``generators-report.md`` (a markdown
table). Run it with ``nice`` and one torch thread (RAGOPS_PLATFORM_TORCH_THREADS=1).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

from bench import data
from bench.stats import percentile
from ragops_evaluation.metrics import contains_answer, exact_match, token_f1
from ragops_generation.settings import GenerationSettings
from ragops_models.defaults import GenerationPreset
from ragops_models.generation import Generator
from ragops_shared.prompts import load_prompt

ARMS = ("gemma-3-270m:3", "smollm2-135m-instruct:3", "smollm2-135m-instruct:2")
CONTEXT_CHUNKS = 3


def run_arm(preset: str, version: int, count: int, seed: int, batch: int, out: Path) -> None:
    """Answer ``count`` questions with one preset and prompt version; writes to ``out``, after
    every batch (a stopped study keeps what it measured), the per-question rows, the arm's
    scores, latency and peak RSS (MiB)."""
    settings = GenerationSettings(preset=cast(GenerationPreset, preset))
    generator = settings.generator()
    generator.warm_up()
    prompt = load_prompt(settings.prompt_name, version)
    questions = data.questions(count, seed=seed)
    rows, latencies = [], []
    for first in range(0, len(questions), batch):
        chunk = questions[first : first + batch]
        chats = [prompt.render(q.question, data.rag_contexts(q, CONTEXT_CHUNKS)) for q in chunk]
        started = time.perf_counter()
        generations = generator.generate(chats)
        per_question = (time.perf_counter() - started) / len(chunk)
        for q, g in zip(chunk, generations, strict=True):
            latencies.append(per_question)
            rows.append(
                {
                    "id": q.id,
                    "answer": g.text,
                    "finish_reason": g.finish_reason,
                    "f1": token_f1(g.text, q.answers),
                    "em": exact_match(g.text, q.answers),
                    "contains": contains_answer(g.text, q.answers),
                }
            )
        print(f"{preset} v{version}: {len(rows)}/{count}", file=sys.stderr, flush=True)
        out.write_text(json.dumps(_summary(generator, preset, version, rows, latencies)))


def _summary(generator: Generator, preset: str, version: int, rows: list[dict], latencies: list[float]) -> dict:
    n = len(rows)
    return {
        "preset": preset,
        "model": generator.model_name,
        "model_version": generator.model_version,
        "prompt_version": version,
        "questions": n,
        "token_f1": sum(r["f1"] for r in rows) / n,
        "exact_match": sum(r["em"] for r in rows) / n,
        "contains": sum(r["contains"] for r in rows) / n,
        "empty": sum(not r["answer"] for r in rows) / n,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }


def markdown(arms: list[dict]) -> str:
    lines = [
        "| model | prompt | questions | token F1 | contains | EM | empty | p50 s/q | p95 s/q | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {a['model']} | v{a['prompt_version']} | {a['questions']} | {a['token_f1']:.3f} | {a['contains']:.3f} "
        f"| {a['exact_match']:.3f} | {a['empty']:.3f} | {a['latency_p50_s']:.2f} | {a['latency_p95_s']:.2f} "
        f"| {a['peak_rss_mib']:.0f} |"
        for a in arms
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generators", description=__doc__)
    parser.add_argument("--count", type=int, default=300, help="questions per arm")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), help="PRESET:PROMPT_VERSION ...")
    parser.add_argument("--out", type=Path, default=Path("bench/generators-report"))
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # subprocess: run one arm, JSON into --out
    parser.add_argument("--warm", help=argparse.SUPPRESS)  # subprocess: convert one preset's GGUF
    args = parser.parse_args(argv)
    if args.warm:
        GenerationSettings(preset=cast(GenerationPreset, args.warm)).generator().warm_up()
        return 0
    if args.arm:
        preset, version = args.arm.split(":")
        # A file, not stdout: the model's loaders log there.
        run_arm(preset, int(version), args.count, args.seed, args.batch, args.out)
        return 0
    arms: list[dict] = []
    for preset in dict.fromkeys(arm.split(":")[0] for arm in args.arms):
        subprocess.run([sys.executable, "-m", "bench.generators", "--warm", preset], check=True)
    common = ["--count", str(args.count), "--seed", str(args.seed), "--batch", str(args.batch)]
    for arm in args.arms:
        result = args.out.with_suffix(f".{arm.replace(':', '-v')}.json")
        command = [sys.executable, "-m", "bench.generators", "--arm", arm, "--out", str(result), *common]
        subprocess.run(command, check=True)
        arms.append(json.loads(result.read_text()))
        # Written after every arm: a study stopped early keeps what it measured.
        args.out.with_suffix(".json").write_text(json.dumps({**vars(args), "arms": arms}, default=str, indent=1))
        args.out.with_suffix(".md").write_text(markdown(arms))
        print(markdown(arms), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
