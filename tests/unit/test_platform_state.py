"""`ragops ingest/ask/sql` find the platform of `ragops up` only while it runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragops.platform import STATE_FILE, PlatformError, running_platform


def test_no_platform(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="no running platform"):
        running_platform(tmp_path)


def test_a_stale_state_file_is_refused(tmp_path: Path) -> None:
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    (tmp_path / STATE_FILE).write_text(json.dumps({"bootstrap_servers": "127.0.0.1:1", "pids": {"sink": dead_pid.pid}}))
    with pytest.raises(PlatformError, match="not running any more"):
        running_platform(tmp_path)
