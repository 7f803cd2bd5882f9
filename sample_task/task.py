#!/usr/bin/env python3
"""CloudAI sample task: prints staged progress, writes a JSON result and exits 0.

Standard library only, and only the part of it that Debian's python3-minimal
ships, so it runs on the slim Python image and on the offline mmdebstrap base
alike. python3-minimal has no json module, hence the small encoder below.

Environment:
    SAMPLE_TASK_SECONDS   total run time in seconds, a float (default 3)
    SAMPLE_TASK_STEPS     number of work steps in step 2 (default 5)
    SAMPLE_TASK_RESULT    where to write the result JSON (default /tmp/result.json)
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time

BANNER = "=" * 60
SUCCESS_LINE = "\u2713 Task completed successfully!"


def say(line: str = "") -> None:
    # Flush each line so `docker logs -f` and the worker's log stream see it at once.
    print(line, flush=True)


def to_json(result: dict[str, object]) -> str:
    """Encode a flat dict of str, int, float and bool values as indented JSON."""

    def scalar(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return '"' + "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in text) + '"'

    fields = [f'  "{key}": {scalar(value)}' for key, value in result.items()]
    return "{\n" + ",\n".join(fields) + "\n}"


def env_number(name: str, default: float, cast: type, minimum: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = cast(raw) if raw.strip() else default
    except ValueError:
        say(f"  (ignoring {name}={raw!r}: not a number; using {default})")
        value = default
    return max(minimum, value)


def run(seconds: float, steps: int) -> dict:
    started = time.time()
    # Steps 1 and 3 take a tenth of the budget each; the work loop takes the rest.
    edge = seconds * 0.1
    tick = (seconds - 2 * edge) / steps

    say("[Step 1/3] Initializing task environment...")
    time.sleep(edge)
    say(f"  -> Host: {socket.gethostname()}  Python: {platform.python_version()}")

    say("[Step 2/3] Processing data...")
    checksum = 0
    for i in range(1, steps + 1):
        time.sleep(tick)
        checksum = (checksum * 31 + i * i) % 1_000_003
        say(f"  -> Progress: {i}/{steps}")

    say("[Step 3/3] Generating results...")
    time.sleep(edge)
    return {
        "status": "success",
        "steps": steps,
        "checksum": checksum,
        "duration_seconds": round(time.time() - started, 3),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
    }


def main() -> int:
    seconds = env_number("SAMPLE_TASK_SECONDS", 3.0, float, 0.0)
    steps = int(env_number("SAMPLE_TASK_STEPS", 5, int, 1))
    result_path = os.environ.get("SAMPLE_TASK_RESULT", "/tmp/result.json")

    say(BANNER)
    say("CloudAI Sample Task - Starting Execution")
    say(BANNER)
    result = run(seconds, steps)
    try:
        with open(result_path, "w", encoding="utf-8") as fh:
            fh.write(to_json(result) + "\n")
        result["result_file"] = result_path
    except OSError as exc:
        # A read-only root filesystem must not fail the task; the summary is in the log.
        say(f"  (could not write {result_path}: {exc.strerror})")
    say(BANNER)
    say(SUCCESS_LINE)
    say(to_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
