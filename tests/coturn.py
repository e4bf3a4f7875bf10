"""A real coturn (``turnserver -c FILE``) as a subprocess of a test: started, waited for,
stopped. The configuration is the caller's."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def start_turnserver(config: Path, log: Path, ready: Callable[[], bool]) -> subprocess.Popen[bytes]:
    """Start coturn with ``config`` (its output in ``log``) and return once ``ready()``
    says it answers. Raises RuntimeError, with the log's tail, if it exits or is not
    ready within READY_TIMEOUT_S (it is stopped first)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["turnserver", "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"turnserver exited:\n{log.read_text()[-3000:]}")
        if ready():
            return process
        time.sleep(0.2)
    stop_turnserver(process)
    raise RuntimeError(f"turnserver not ready:\n{log.read_text()[-3000:]}")


def stop_turnserver(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate ``process`` if it still runs (killed if it lingers); bounded."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)
