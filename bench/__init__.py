"""``make bench``: performance rows measured against the obvious alternative in the same run.

Each row (``bench.rows.*``) runs in its own process, warms up, then alternates its two
sides for a few repeats and reports median and spread of both and their ratio
(``bench.runner`` collects the rows, prints the table and writes ``bench-report.json``).

The environment below is what ``ragops up`` gives its services (``ragops/platform.py``); it
is set here, before any row imports torch, so a row run alone behaves like one run by the
runner.
"""

import os

BENCH_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # Idle OpenMP threads sleep instead of spinning on the core another process needs.
    "OMP_WAIT_POLICY": "PASSIVE",
    "TOKENIZERS_PARALLELISM": "false",
}
for _name, _value in BENCH_ENV.items():
    os.environ.setdefault(_name, _value)
