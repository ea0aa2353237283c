"""Container health probe for RAGOps services (Docker HEALTHCHECK, compose healthcheck,
Kubernetes exec probes). Standard library plus the platform's own settings class.

    python /opt/ragops/probe.py live          # PID 1 is a running RAGOps service (not a zombie)
    python /opt/ragops/probe.py ready         # live, and a Kafka bootstrap server accepts TCP
    python /opt/ragops/probe.py http URL      # GET URL answers 2xx (images have no curl)

The FastStream services (ingestion, embedding, retrieval, generation, evaluation, feedback)
have no HTTP endpoint yet, so ``live``/``ready`` are what an exec probe can check from the
outside: the process is alive and the broker is reachable from its network namespace. A
stuck consumer is not detected; switch the probes to ``httpGet`` on ``/health``/``/ready``
once the services serve them. The gateway and the sink use ``http`` on their own endpoints.
Exit status 0 = healthy, 1 = not.
"""

from __future__ import annotations

import socket
import sys
import urllib.request

TIMEOUT_S = 3.0


def live() -> str | None:
    """None when PID 1 is a ``ragops_*`` process that is not a zombie, else the reason."""
    try:
        with open("/proc/1/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        with open("/proc/1/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError as error:
        return f"cannot read /proc/1: {error}"
    if "ragops_" not in cmdline:
        return f"PID 1 is not a RAGOps service: {cmdline!r}"
    if state in {"Z", "X"}:
        return f"PID 1 is in state {state}"
    return None


def kafka_reachable() -> str | None:
    """None when one of ``KAFKA_BOOTSTRAP_SERVERS`` accepts a TCP connection, else the reason."""
    from ragops_shared.settings import KafkaSettings  # the one place settings are read

    errors = []
    for server in KafkaSettings().bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S):
                return None
        except (OSError, ValueError) as error:
            errors.append(f"{server}: {error}")
    return "no Kafka bootstrap server reachable (" + "; ".join(errors) + ")"


def http_ok(url: str) -> str | None:
    """None when ``GET url`` answers 2xx, else the reason."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return None if 200 <= response.status < 300 else f"{url}: HTTP {response.status}"
    except Exception as error:  # noqa: BLE001 (any failure is "not healthy")
        return f"{url}: {error}"


def main(argv: list[str]) -> int:
    if argv[:1] == ["live"] and len(argv) == 1:
        problem = live()
    elif argv[:1] == ["ready"] and len(argv) == 1:
        problem = live() or kafka_reachable()
    elif argv[:1] == ["http"] and len(argv) == 2:
        problem = http_ok(argv[1])
    else:
        print("usage: probe.py live | ready | http URL", file=sys.stderr)
        return 2
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
