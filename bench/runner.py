"""``python -m bench``: run every row in its own process, print the table, write the report.

Rows run one after another, each as ``python -m bench.rows.<module>`` with a time limit, so
a row's models, threads and broker cannot disturb the next. A row that crashes or runs out
of time is reported as such (and the run exits 1); a row that misses its goal is a result,
not an error.
"""

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from rich.console import Console

from bench import BENCH_ENV
from bench.harness import failed
from bench.report import markdown, print_details, print_table

# id -> (module, title, time limit in seconds). Limits are about twice what a row takes on
# the 2-core machine, so a hung row cannot push the whole run far past 20 minutes.
ROWS: dict[str, tuple[str, str, int]] = {
    "P1": ("p1_embedding", "embedding", 360),
    "P2": ("p2_generation", "generation", 480),
    "P3": ("p3_bus", "bus hop", 180),
    "P4": ("p4_sink", "sink", 300),
    "P5": ("p5_ingest", "ingest end to end", 420),
    "P6": ("p6_query", "query path and memory", 420),
    "P7": ("p7_scaleout", "scale-out (evaluation)", 420),
    "P8": ("p8_redaction", "redaction", 240),
    "S1": ("s1_sequential", "sequential test", 240),
}


def machine() -> dict:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "native_bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


def _end_tree(process: subprocess.Popen[bytes]) -> None:
    """End a timed-out row and every process it started (a broker it started runs in its own session)."""
    try:
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for member in reversed(tree):
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=15)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    process.wait()


def run_row(
    row_id: str, quick: bool, repeats: int | None, console: Console, broker_storage: str | None = None
) -> list[dict]:
    """The report rows of one row process (P6 also gives the memory row); ``broker_storage``
    (``durable``/``memory``) overrides ``RAGOPS_BROKER_STORAGE`` for its embedded broker."""
    module, title, limit = ROWS[row_id]
    console.rule(f"[bold]{row_id}[/] {title}")
    with tempfile.TemporaryDirectory(prefix="ragops-bench-row-") as folder:
        out = Path(folder) / "row.json"
        command = [sys.executable, "-m", f"bench.rows.{module}", "--out", str(out)]
        command += ["--quick"] if quick else []
        command += ["--repeats", str(repeats)] if repeats else []
        started = time.perf_counter()
        storage = {"RAGOPS_BROKER_STORAGE": broker_storage} if broker_storage else {}
        process = subprocess.Popen(command, env={**os.environ, **BENCH_ENV, **storage})
        try:
            code = process.wait(limit)
        except subprocess.TimeoutExpired:
            _end_tree(process)
            return [failed(row_id, title, f"timed out after {limit} s", time.perf_counter() - started)]
        except KeyboardInterrupt:
            _end_tree(process)
            raise
        if code != 0 or not out.is_file():
            return [
                failed(
                    row_id,
                    title,
                    f"row process exited with status {code} (its output is above)",
                    time.perf_counter() - started,
                )
            ]
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: check that every row works (numbers mean little)"
    )
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument(
        "--repeats", type=int, default=None, help="measured rounds per row after its warm-up (default 3, quick 2)"
    )
    parser.add_argument(
        "--broker-storage",
        choices=["durable", "memory"],
        default=None,
        help="the embedded broker's log: on disk or in memory (default: RAGOPS_BROKER_STORAGE, else durable)",
    )
    parser.add_argument("--report", type=Path, default=Path("bench-report.json"))
    options = parser.parse_args(argv)
    chosen = [row.strip().upper() for row in options.rows.split(",") if row.strip()]
    unknown = [row for row in chosen if row not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")

    # A log file or pipe gets a table wide enough to read, not the 80 columns rich assumes.
    console = Console(width=None if sys.stdout.isatty() else 150)
    about = machine()
    console.print(
        f"[bold]make bench[/] on {about['cpus']} CPUs ({about['cpu_model']}, native bf16: {about['native_bf16']}), "
        f"{'QUICK sizes' if options.quick else 'full sizes'}; rows {', '.join(chosen)}; "
        f"broker storage {options.broker_storage or 'from RAGOPS_BROKER_STORAGE (default durable)'}; "
        "each row prints its sizes"
    )
    started_at, started = datetime.now(UTC), time.perf_counter()
    rows: list[dict] = []
    for row_id in chosen:
        rows.extend(run_row(row_id, options.quick, options.repeats, console, options.broker_storage))
    duration = time.perf_counter() - started

    console.rule("[bold]results")
    title = f"RAGOps bench ({'quick' if options.quick else 'full'}, {duration / 60:.1f} min, ratio = ours / baseline)"
    print_table(rows, console, title)
    print_details(rows, console)
    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(duration, 1),
        "quick": options.quick,
        "broker_storage": options.broker_storage,
        "machine": about,
        "rows": rows,
        "table_markdown": markdown(rows),
    }
    options.report.write_text(json.dumps(report, indent=2))
    passed = sum(row["passed"] for row in rows)
    console.print(
        f"{passed}/{len(rows)} rows meet their goal; report written to {options.report} ({duration / 60:.1f} min)"
    )
    return 1 if any(row.get("error") for row in rows) else 0
