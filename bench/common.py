"""Shared benchmark helpers: machine description, peak-RSS sampler, medians, Markdown tables."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
MB = 1000 * 1000
MIB = 1024 * 1024


def add_repo_root() -> None:
    """Make `tests` importable (the benchmarks reuse tests/seaweed.py)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine() -> str:
    """One line: CPU model, cores, RAM, Python version, OS."""
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {_ram_bytes() / 2**30:.0f} GiB RAM, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def command_line(module: str) -> str:
    """The exact command that is running, e.g. `.venv/bin/python -m bench.sweep --runs 3`."""
    try:
        python = os.path.relpath(sys.executable, Path.cwd())
    except ValueError:
        python = sys.executable
    return shlex.join([python, "-m", module, *sys.argv[1:]])


def rss_bytes() -> int:
    """The current resident set size (VmRSS) of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class RssSampler:
    """Polls VmRSS every `interval_s` in a thread; `growth` is the peak minus the RSS at start."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def growth(self) -> int:
        """Peak RSS above the baseline taken just before the measured call, in bytes."""
        return max(0, self.peak - self.baseline)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        gc.collect()
        self.baseline = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._poll, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.peak = max(self.peak, rss_bytes())
        self._stop.set()
        assert self._thread is not None
        self._thread.join()


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t:` ... then `t[0]` is the elapsed wall time in seconds."""
    result: list[float] = []
    started = time.perf_counter()
    try:
        yield result
    finally:
        result.append(time.perf_counter() - started)


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


def fmt_runs(values: Sequence[float], spec: str = ".2f") -> str:
    """`1.23 (1.20, 1.23, 1.31)`: the median and, when there are several, every run."""
    head = format(median(values), spec)
    if len(values) == 1:
        return head
    return f"{head} ({', '.join(format(value, spec) for value in values)})"


def verdict(ok: bool) -> str:
    return "met" if ok else "**target missed**"


def markdown_table(
    title: str,
    module: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    notes: Sequence[str] = (),
) -> str:
    """A Markdown section: title, date, machine, exact command, the table, then notes."""
    lines = [
        f"## {title}",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- Machine: {machine()}",
        f"- Command: `{command_line(module)}`"
        + (" (run by `make bench`)" if os.environ.get("MAKELEVEL") else ""),
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def add_results_option(parser: argparse.ArgumentParser) -> None:
    """`--results PATH`: where the table is appended (default bench/RESULTS.md)."""
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="Markdown file the table is appended to (default: %(default)s)")


def publish(section: str, results: Path = RESULTS) -> None:
    """Print the section and append it to bench/RESULTS.md."""
    print(section, flush=True)
    with results.open("a", encoding="utf-8") as handle:
        handle.write("\n" + section)
