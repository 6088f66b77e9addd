"""One benchmark worker process under the benchmark's deadline, as bench.gpu and bench.device run
theirs: each measurement in its own process (a crash or an out-of-memory stays there), its rows
read back from a JSON-lines file, and a row saying why it stopped if it did not end well."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path


def run_for_rows(argv: list[str], rows_path: Path, log: Path, deadline: float, env: dict,
                 failure: dict, cwd: Path | None = None) -> list[dict]:
    """Run `argv` (its output into `log`) until it ends or the wall clock reaches `deadline`;
    return the rows it wrote to `rows_path`, plus `failure` with a `task_error` when it failed."""
    start, status = time.monotonic(), None
    with open(log, "w") as fh:
        try:
            status = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    timeout=max(1.0, deadline - time.time())).returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
    if status != 0:
        why = "stopped at the time budget" if status == "timeout" else f"exited with status {status}"
        rows.append({**failure, "task_error": f"{why} after {time.monotonic() - start:.0f} s; log {log}"})
    return rows
