"""``python -m chaos``: one chaos run of the embedded platform, then its closing figures.

1. Start an :class:`~ragops.platform.EmbeddedPlatform` (durable broker) in a temporary folder,
   supervise it in a background thread as ``ragops up`` does, ingest a slice of the corpus.
2. Ask ``--questions`` questions through the gateway's HTTP API at ``--concurrency``, each
   tagged in its text so its request is found in Kafka.
3. Meanwhile, in a seeded random order, ``--interval-s`` apart: ``kill -9`` each service,
   ``kill -9`` generation the moment it publishes an answer (before its consumer commits),
   ``kill -9`` the broker, stop the sink (SIGSTOP ``--sink-stop-s``, then SIGCONT) and inject
   rounds of poison records of every kind (:func:`chaos.bus.poison_round`).
4. Wait until every consumer group has committed everything, then check (:mod:`chaos.checks`)
   and print the figures; write ``--report`` and exit 1 when a check fails.
"""

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaos import bus, checks
from ragops.client import PlatformClient
from ragops.platform import CONSUMER_GROUPS, SERVICES, EmbeddedPlatform, Exit, PlatformError
from ragops_analytics import queries
from ragops_analytics.client import AnalyticsClient
from ragops_schemas.topics import TOPICS, Topic
from ragops_shared.datasets import CorpusDocument, Question, load_corpus, load_questions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TARGETED = "generation-window"
BROKER = "broker"
SINK_STOP = "sink-stop"
RETRY_S = 240.0
"""How long (s from its first try) a call is sent again after a lost response: past the
supervisor's restart of a killed gateway or broker, under its backoff."""
POISON = "poison"


@dataclass
class Options:
    """A chaos run's parameters (the command line's, see :func:`parse`)."""

    questions: int = 120
    concurrency: int = 8
    documents: int = 40
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(2**32))
    kills: list[str] = field(default_factory=lambda: list(SERVICES))
    targeted: bool = True
    broker: bool = True
    sink_stop_s: float = 20.0
    poison_rounds: int = 2
    oversized_mib: float = 15.0
    interval_s: float = 20.0
    drain_timeout_s: float = 300.0
    data: Path = DATA
    report: Path = Path("chaos-report.json")


def plan(options: Options) -> list[str]:
    """The faults of a run in their seeded random order: ``kill:<service>`` per service of
    ``kills``, then (when asked for) the targeted generation kill, the broker kill, the sink
    stop and each poison round."""
    actions = [f"kill:{service}" for service in options.kills]
    actions += [TARGETED] * options.targeted + [BROKER] * options.broker
    actions += [SINK_STOP] * (options.sink_stop_s > 0) + [POISON] * options.poison_rounds
    random.Random(options.seed).shuffle(actions)
    return actions


def workload(options: Options) -> tuple[list[CorpusDocument], list[Question]]:
    """The first ``documents`` passages of the corpus and ``questions`` questions about them
    (cycled when there are fewer)."""
    documents = load_corpus(options.data / "corpus.jsonl")[: options.documents]
    ids = {document.id for document in documents}
    about = [q for q in load_questions(options.data / "questions.jsonl", seed=options.seed) if q.context_ids[0] in ids]
    if not about:
        raise SystemExit(f"no question in {options.data} is about the first {options.documents} passages")
    return documents, [about[i % len(about)] for i in range(options.questions)]


class Chaos:
    """One run's state: the platform, the supervisor thread, the bus reader, what was done."""

    def __init__(self, platform: EmbeddedPlatform, options: Options) -> None:
        self.platform = platform
        self.options = options
        self.rng = random.Random(options.seed)
        self.exits: list[Exit] = []
        self.supervisor_error = ""
        self.done: list[dict[str, Any]] = []
        self.poison: list[checks.Poison] = []
        self.extra_tags: list[str] = []
        self.targeted: dict[str, Any] = {}
        self._stop = threading.Event()
        self.calls: list[checks.Call] = []
        self.load_done = False
        self.t0 = 0.0
        self.reader = bus.BusReader(platform.kafka_settings)

    # ------------------------------------------------------------------ supervision

    def supervise(self) -> None:
        """The loop of ``ragops up``, in a thread, until :meth:`stop_supervising`."""
        while not self._stop.wait(self.platform.supervisor.poll_interval_s):
            try:
                self.exits += self.platform.supervise()
            except PlatformError as error:
                self.supervisor_error = str(error)
                return

    def stop_supervising(self) -> None:
        self._stop.set()

    # ----------------------------------------------------------------------- faults

    def _pid(self, service: str) -> int:
        return self.platform.processes[service].pid

    async def kill_in_publish_window(self, question: str) -> dict[str, Any]:
        """``kill -9`` generation the moment an answer of its appears on the answer topic:
        its consumer commits only after publishing its batch's answers, so the batch is
        redelivered to its next start, which must republish the same answers under the
        same event ids. Asks a question itself when the load has none in flight."""
        topic = Topic.ANSWER_GENERATED.value
        positions = {p: end for (t, p), end in self.reader.ends.items() if t == topic}
        asking = asyncio.create_task(self.ask_one(f"t{len(self.done)}", question)) if self.load_done else None
        answer = await bus.first_new_record(self.platform.kafka_settings, topic, positions, timeout_s=180)
        if answer is None:
            return {"missed": "no answer within 180 s"}
        os.kill(self._pid("generation"), signal.SIGKILL)
        seen = bus.summarise(answer)
        self.targeted = {"request_id": seen.request_id, "answer_event_id": seen.event_id}
        # In the window when generation's group had not committed past the answer's cause yet.
        cause = next(
            (
                (r.topic, r.partition, r.offset)
                for r in reversed(self.reader.records)
                if r.topic == Topic.CONTEXT_RETRIEVED and r.request_id == seen.request_id
            ),
            None,
        )
        if cause is not None:
            group = "ragops-generation"
            committed = await bus.committed_offsets(self.platform.kafka_settings, (group,), [cause[:2]])
            self.targeted["cause_uncommitted_at_kill"] = committed.get(group, {}).get(cause[:2], 0) <= cause[2]
        if asking is not None:
            await asyncio.gather(asking, return_exceptions=True)
        return dict(self.targeted)

    async def fault(self, action: str, question: str) -> None:
        started = time.monotonic()
        detail: dict[str, Any] = {}
        if action.startswith("kill:"):
            os.kill(self._pid(action.removeprefix("kill:")), signal.SIGKILL)
        elif action == TARGETED:
            detail = await self.kill_in_publish_window(question)
        elif action == BROKER:
            assert self.platform.kafka is not None
            os.kill(self.platform.kafka.pid or 0, signal.SIGKILL)
        elif action == SINK_STOP:
            pid = self._pid("sink")
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(self.options.sink_stop_s)
            os.kill(pid, signal.SIGCONT)
        elif action == POISON:
            name = f"p{sum(1 for d in self.done if d['action'] == POISON)}"
            records, tag = bus.poison_round(name, question, int(self.options.oversized_mib * 2**20))
            placed = await _retrying(lambda: bus.inject(self.platform.kafka_settings, records))
            self.poison += placed
            self.extra_tags.append(tag)
            detail = {"records": len(placed)}
        self.done.append({"action": action, "at_s": round(started - self.t0, 1), **detail})
        print(f"  [{started - self.t0:6.1f} s] {action} {detail or ''}", flush=True)

    async def faults(self, load_started: asyncio.Event, question: str) -> None:
        await load_started.wait()
        for action in plan(self.options):
            await asyncio.sleep(self.options.interval_s)
            try:
                await self.fault(action, question)
            except Exception as error:  # noqa: BLE001 - a fault that could not be done is reported, the run goes on
                self.done.append({"action": action, "error": f"{type(error).__name__}: {error}"})
                print(f"  {action} failed: {error}", flush=True)

    # ------------------------------------------------------------------------ load

    async def ask_one(self, tag: str, question: str) -> None:
        async with httpx.AsyncClient(base_url=self.platform.gateway_url, auth=self.platform.auth, timeout=360) as http:
            self.calls.append(await _ask(http, tag, question, time.monotonic()))

    async def load(self, questions: list[Question], started: asyncio.Event) -> None:
        """Ask ``questions`` at the run's concurrency; each call's outcome goes to ``calls``."""
        limit = asyncio.Semaphore(self.options.concurrency)

        async def one(http: httpx.AsyncClient, index: int, question: Question) -> None:
            async with limit:
                began = time.monotonic()
                started.set()
                self.calls.append(await _ask(http, f"q{index:04d}", question.question, began))

        async with httpx.AsyncClient(base_url=self.platform.gateway_url, auth=self.platform.auth, timeout=360) as http:
            await asyncio.gather(*(one(http, i, q) for i, q in enumerate(questions)))
        self.load_done = True


async def _ask(http: httpx.AsyncClient, tag: str, question: str, began: float) -> checks.Call:
    """POST one question with an ``Idempotency-Key``, as a careful client does: a call that
    got no answer because the gateway or the broker was down (no connection, a connection
    dropped mid-call, 503) is sent again with the same key for up to :data:`RETRY_S`, which
    the gateway takes as the same request (never a second one). Any other status is the outcome."""
    attempts = 0
    while True:
        attempts += 1
        try:
            response = await http.post(
                "/v1/queries",
                json={"question": bus.tagged(question, tag), "timeout_s": 300},
                headers={"Idempotency-Key": f"chaos-{tag}"},
            )
        except httpx.TransportError as failed:
            if time.monotonic() < began + RETRY_S:
                await asyncio.sleep(1)
                continue
            error = f"{type(failed).__name__}: {failed}"
            return checks.Call(tag, began, time.monotonic(), None, attempts=attempts, error=error)
        if response.status_code == 503 and time.monotonic() < began + RETRY_S:
            await asyncio.sleep(1)
            continue
        ok = response.status_code == 200
        return checks.Call(
            tag,
            began,
            time.monotonic(),
            response.status_code,
            response.json().get("request_id") if ok else None,
            attempts=attempts,
            error="" if ok else response.text[:200],
        )


async def _retrying(make: Any, timeout_s: float = 120.0) -> Any:
    """Await ``make()`` again on a Kafka error (the broker may be restarting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await make()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


async def _ingest(platform: EmbeddedPlatform, documents: list[CorpusDocument]) -> int:
    async with PlatformClient(platform.kafka_settings, name="chaos") as client:
        outcomes = await client.ingest([document.submitted(client.producer) for document in documents])
    return len(outcomes)


async def drain(chaos: Chaos, analytics: AnalyticsClient, tags: list[str], timeout_s: float) -> dict[str, Any]:
    """Wait (up to ``timeout_s``) until no group has lag, no request is unaccounted for,
    ClickHouse equals Kafka and every service is ready (one killed last may still be
    starting); return the figures as they are then."""
    deadline = time.monotonic() + timeout_s
    sink_topics = [spec.topic.value for spec in TOPICS if spec.sink]
    while True:
        asked = time.monotonic()
        committed = await bus.committed_offsets(chaos.platform.kafka_settings, CONSUMER_GROUPS, list(chaos.reader.ends))
        await chaos.reader.settled(after=asked)
        records = list(chaos.reader.records)
        lags = {group: checks.lag(committed.get(group, {}), chaos.reader.ends) for group in CONSUMER_GROUPS}
        try:
            rows = await asyncio.to_thread(queries.stored_keys, analytics)
            answers = await asyncio.to_thread(queries.answer_rows_per_request, analytics)
        except Exception as error:  # noqa: BLE001 - the sink may be restarting: ask again
            print(f"  ClickHouse not readable yet: {error}", flush=True)
            rows, answers = [], {}
        store = checks.compare_store(records, [(t, checks.row_key(e, i, p, o)) for t, e, i, p, o in rows], sink_topics)
        places = [(p.topic, p.partition, p.offset) for p in chaos.poison]
        requests = checks.request_figures(records, tags, answers, ignore=places)
        ready = await asyncio.to_thread(_ready, chaos.platform)
        settled = (
            not any(lags.values())
            and store.equal
            and not requests.lost
            and len(committed) == len(CONSUMER_GROUPS)
            and all(code == 200 for code in ready.values())
        )
        if settled or time.monotonic() > deadline:
            return {"lags": lags, "store": store, "requests": requests, "records": records, "ready": ready}
        await asyncio.sleep(3)


def _ready(platform: EmbeddedPlatform) -> dict[str, int]:
    codes = {}
    for service in platform.services:
        try:
            codes[service] = httpx.get(f"{platform.ops_url(service)}/ready", timeout=10).status_code
        except httpx.HTTPError:
            codes[service] = 0
    return codes


def run_chaos(options: Options, data_dir: Path) -> dict[str, Any]:
    """One chaos run (see the module docstring) in ``data_dir``; returns the report, whose
    ``failures`` list says why it failed (empty: it passed)."""
    print(f"chaos seed {options.seed}; plan: {', '.join(plan(options))}", flush=True)
    documents, questions = workload(options)
    begun = time.monotonic()
    with EmbeddedPlatform(data_dir=data_dir, broker_storage="durable") as platform:
        platform.wait_ready(timeout_s=600)
        ready_s = time.monotonic() - begun
        print(f"platform ready in {ready_s:.0f} s", flush=True)
        chaos = Chaos(platform, options)
        supervisor = threading.Thread(target=chaos.supervise, name="supervisor", daemon=True)
        supervisor.start()
        analytics = platform.analytics()
        try:
            indexed = asyncio.run(_ingest(platform, documents))
            print(f"{indexed} passages ingested; asking {len(questions)} questions", flush=True)
            report = asyncio.run(_under_load(chaos, analytics, questions))
        finally:
            chaos.stop_supervising()
            supervisor.join()
            analytics.close()
        report["restarts"] = dict(platform.restarts)
        report["exits"] = [f"{e.name}: {e.code} ({e.reason})" for e in chaos.exits]
        report["supervisor_error"] = chaos.supervisor_error
        report["seconds"] = {"startup": round(ready_s, 1), "total": round(time.monotonic() - begun, 1)}
    report["seed"] = options.seed
    report["failures"] = checks.failures(report) + ([chaos.supervisor_error] if chaos.supervisor_error else [])
    return report


async def _under_load(chaos: Chaos, analytics: AnalyticsClient, questions: list[Question]) -> dict[str, Any]:
    reading = asyncio.create_task(chaos.reader.run())
    load_started = asyncio.Event()
    chaos.t0 = time.monotonic()
    faults = asyncio.create_task(chaos.faults(load_started, questions[0].question))
    try:
        await chaos.load(questions, load_started)
        print(f"  [{time.monotonic() - chaos.t0:6.1f} s] load done ({len(chaos.calls)} calls)", flush=True)
        await faults
        calls = chaos.calls
        tags = [call.tag for call in calls] + chaos.extra_tags
        drained = await drain(chaos, analytics, tags, chaos.options.drain_timeout_s)
    finally:
        for task in (faults, reading):
            task.cancel()
        await asyncio.gather(faults, reading, return_exceptions=True)
    return figures(chaos, calls, drained)


def figures(chaos: Chaos, calls: list[checks.Call], drained: dict[str, Any]) -> dict[str, Any]:
    """The report of a run from what was observed."""
    requests: checks.RequestFigures = drained["requests"]
    store: checks.StoreComparison = drained["store"]
    records: list[checks.Seen] = drained["records"]
    answers = [r.event_id for r in records if r.event_type == "query.answer_generated"]
    target = chaos.targeted.get("answer_event_id")
    latencies = sorted(call.finished - call.started for call in calls)
    return {
        "requests": asdict(requests),
        "http": {
            "calls": len(calls),
            "ok": sum(1 for call in calls if call.status == 200),
            "retried": sum(1 for call in calls if call.attempts > 1),
            "retries": sum(call.attempts - 1 for call in calls),
            # Neither an answer nor a dead letter (502) at the end of its retries.
            "unanswered": sorted(call.tag for call in calls if call.status not in (200, 502)),
            "errors": dict(
                sorted(
                    _count(str(call.status or call.error.split(":")[0]) for call in calls if call.status != 200).items()
                )
            ),
            "max_latency_s": round(latencies[-1], 1) if latencies else None,
            "p50_latency_s": round(latencies[len(latencies) // 2], 1) if latencies else None,
        },
        "longest_stall_s": round(checks.longest_stall(calls), 1),
        "poison": checks.poison_outcomes(chaos.poison, records),
        "clickhouse_vs_kafka": {
            "kafka": store.kafka,
            "clickhouse": store.clickhouse,
            "unparsable": store.unparsable,
            "missing": {t: [list(k) for k in keys[:5]] for t, keys in store.missing.items()},
            "extra": {t: [list(k) for k in keys[:5]] for t, keys in store.extra.items()},
        },
        "lag": drained["lags"],
        "ready": drained["ready"],
        "targeted_generation_kill": {
            **chaos.targeted,
            "copies_of_that_answer_in_kafka": answers.count(target) if target else 0,
            "answers_published_more_than_once_same_id": sum(1 for n in _count(answers).values() if n > 1),
        },
        "faults": chaos.done,
    }


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item)] = counts.get(str(item), 0) + 1
    return counts


def closing(report: dict[str, Any]) -> str:
    """The closing figures, as printed at the end of a run."""
    r, store = report["requests"], report["clickhouse_vs_kafka"]
    poison = report["poison"]
    http = report["http"]
    lines = [
        f"requests {r['requests']}  answered {r['answered']}  dead-lettered {r['dead_lettered']} {r['reasons']}  "
        f"lost {len(r['lost'])}  duplicated {len(r['duplicated'])}  "
        f"questions never in Kafka {len(r['unpublished'])}  asked as several requests {len(r['split'])}",
        f"HTTP: {http['ok']}/{http['calls']} answered, {http['retried']} after a retry with the same "
        f"Idempotency-Key ({http['retries']} retries), errors {http['errors']}; "
        f"latency p50 {http['p50_latency_s']} s, max {http['max_latency_s']} s; "
        f"longest stall {report['longest_stall_s']} s",
        "poison (injected/dead-lettered/processed/lost): "
        + ", ".join(
            f"{k} {v['injected']}/{v['dead_lettered']}/{v['processed']}/{v['lost']}" for k, v in poison.items()
        ),
        f"ClickHouse vs Kafka: {sum(store['kafka'].values())} records' keys in Kafka, "
        f"{sum(store['clickhouse'].values())} rows ({sum(store['unparsable'].values())} unparsable); "
        f"missing {sum(map(len, store['missing'].values()))}, extra {sum(map(len, store['extra'].values()))}",
        f"targeted generation kill: {report['targeted_generation_kill']}",
        f"restarts {report['restarts']}",
        f"lag {report['lag']}",
        f"ready {report['ready']}",
        f"time: startup {report['seconds']['startup']} s, total {report['seconds']['total']} s; seed {report['seed']}",
        "PASS" if not report["failures"] else "FAIL: " + "; ".join(report["failures"]),
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> tuple[Options, Path | None]:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=defaults.questions)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--documents", type=int, default=defaults.documents, help="passages ingested")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--kill", default=",".join(defaults.kills), help="services to kill -9 once each (comma-separated; '' for none)"
    )
    parser.add_argument(
        "--no-targeted", action="store_true", help="skip the kill of generation between publish and commit"
    )
    parser.add_argument("--no-broker", action="store_true", help="skip the broker kill")
    parser.add_argument("--sink-stop-s", type=float, default=defaults.sink_stop_s, help="0: do not stop the sink")
    parser.add_argument(
        "--poison-rounds", type=int, default=defaults.poison_rounds, help="rounds of one poison record of each kind"
    )
    parser.add_argument("--oversized-mib", type=float, default=defaults.oversized_mib)
    parser.add_argument("--interval-s", type=float, default=defaults.interval_s, help="between two faults")
    parser.add_argument("--drain-timeout-s", type=float, default=defaults.drain_timeout_s)
    parser.add_argument("--data", type=Path, default=defaults.data, help="corpus.jsonl and questions.jsonl")
    parser.add_argument("--report", type=Path, default=defaults.report)
    parser.add_argument("--data-dir", type=Path, default=None, help="the platform's folder (default: a temporary one)")
    args = parser.parse_args(argv)
    options = Options(
        questions=args.questions,
        concurrency=args.concurrency,
        documents=args.documents,
        seed=args.seed,
        kills=[s for s in args.kill.split(",") if s],
        targeted=not args.no_targeted,
        broker=not args.no_broker,
        sink_stop_s=args.sink_stop_s,
        poison_rounds=args.poison_rounds,
        oversized_mib=args.oversized_mib,
        interval_s=args.interval_s,
        drain_timeout_s=args.drain_timeout_s,
        data=args.data,
        report=args.report,
    )
    if unknown := set(options.kills) - set(SERVICES):
        parser.error(f"unknown services {sorted(unknown)}; choose among {', '.join(SERVICES)}")
    return options, args.data_dir


def main(argv: list[str] | None = None) -> int:
    options, data_dir = parse(argv)
    # The harness's own clients lose the broker on purpose: their reconnection warnings are noise.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # A SIGTERM (a time limit) unwinds like Ctrl-C, so the platform is stopped: its broker runs
    # in a session of its own and would outlive the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="ragops-chaos-") as temporary:
        report = run_chaos(options, data_dir or Path(temporary))
    options.report.write_text(json.dumps(report, indent=2, default=str))
    print(closing(report))
    print(f"report written to {options.report}")
    return 1 if report["failures"] else 0
