"""`ragops status`, `ragops logs`, `ragops --version` and the supervisor's bounded logs."""

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from ragops import cli
from ragops.platform import STATE_FILE
from ragops.supervision import bound_log


def test_a_log_past_its_bound_moves_aside_and_the_writer_keeps_appending(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    with path.open("ab", buffering=0) as writer:  # as the supervisor hands it to a service
        writer.write(b"old line\n" * 20)
        assert not bound_log(path, max_bytes=1000)
        assert bound_log(path, max_bytes=100)
        writer.write(b"new line\n")
    assert path.read_bytes() == b"new line\n"
    assert (tmp_path / "gateway.log.1").read_bytes() == b"old line\n" * 20
    assert not bound_log(tmp_path / "missing.log", max_bytes=1)


def test_last_lines_reads_the_end(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert cli.last_lines(path, 3) == ["line 99997", "line 99998", "line 99999"]
    assert cli.last_lines(path, 0) == []


def test_logs_prints_one_service_or_all_prefixed(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "gateway.log").write_text("g1\ng2\ng3\n")
    (tmp_path / "logs" / "sink.log").write_text("s1\n")
    runner = CliRunner()
    one = runner.invoke(cli.app, ["logs", "gateway", "--lines", "2", "--data-dir", str(tmp_path)])
    assert (one.exit_code, one.stdout) == (0, "g2\ng3\n")
    every = runner.invoke(cli.app, ["logs", "-n", "1", "--data-dir", str(tmp_path)])
    assert every.stdout == "gateway | g3\nsink | s1\n"
    assert runner.invoke(cli.app, ["logs", "nope", "--data-dir", str(tmp_path)]).exit_code == 1


def test_status_reports_processes_restarts_and_readiness(tmp_path: Path) -> None:
    state = {
        "bootstrap_servers": "127.0.0.1:1",
        "gateway_url": "http://127.0.0.1:1",
        "sql_url": "http://127.0.0.1:1/sql",
        "ops_urls": {"sink": "http://127.0.0.1:1"},
        "pids": {"gateway": os.getpid(), "sink": 2**22 + 1},
        "restarts": {"sink": 2},
    }
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    shown = CliRunner().invoke(cli.app, ["status", "--json", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 3, shown.output  # not every service is running and ready
    assert json.loads(shown.stdout) == [
        {
            "service": "gateway",
            "running": True,
            "restarts": 0,
            "ready": "unreachable",
            "oldest_unprocessed_age_s": None,
            "stuck": False,
        },
        {
            "service": "sink",
            "running": False,
            "restarts": 2,
            "ready": "unreachable",
            "oldest_unprocessed_age_s": None,
            "stuck": False,
        },
    ]


def test_version_names_the_package_and_the_contracts() -> None:
    shown = CliRunner().invoke(cli.app, ["--version"])
    assert shown.exit_code == 0
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("ragops ") and lines[1].startswith("event schemas: ") and lines[2].startswith("topics: ")
