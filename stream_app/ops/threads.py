"""CPU time by thread, for ``/metrics``: which of the worker's threads spends the process's CPU.

A worker runs several threads: the event loop of the agents (``MainThread``), the Kafka consumer's own
loop (Faust runs aiokafka in a thread of its own), the producer's delivery-report thread, librdkafka's
C threads (``rdk:main``, ``rdk:broker``...). ``process_cpu_seconds_total`` sums them; this collector
splits the sum, read from ``/proc/self/task`` at scrape time. A thread is named by its Python name when
it has one, else by its kernel name (what librdkafka sets); trailing digits are dropped so the label
set stays bounded (``rdk:broker1`` and ``rdk:broker2`` are one ``rdk:broker``). Off Linux it yields
nothing.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_TASKS = Path("/proc/self/task")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_TRAILING_NUMBER = re.compile(r"[-_ ]?\d+$")


def thread_label(name: str) -> str:
    """A thread's name without its trailing number: a bounded label."""
    return _TRAILING_NUMBER.sub("", name.strip()) or "unnamed"


def task_cpu(stat: str) -> tuple[str, float]:
    """A ``/proc/<pid>/task/<tid>/stat`` line: the kernel's thread name and its CPU seconds (user +
    system). The name is in parentheses and may itself hold spaces or parentheses."""
    opened, closed = stat.index("("), stat.rindex(")")
    fields = stat[closed + 2 :].split()
    # after the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    return stat[opened + 1 : closed], (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def cpu_by_thread() -> dict[str, float]:
    """CPU seconds so far, summed by thread label (see the module's docstring)."""
    python_names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    totals: dict[str, float] = {}
    try:
        tasks = list(_TASKS.iterdir())
    except OSError:
        return totals
    for task in tasks:
        try:
            kernel_name, seconds = task_cpu((task / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
        label = thread_label(python_names.get(int(task.name), kernel_name))
        totals[label] = totals.get(label, 0.0) + seconds
    return totals


class ThreadCpuCollector(Collector):
    """``stream_app_thread_cpu_seconds_total{thread}``, read at each scrape."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "stream_app_thread_cpu_seconds",
            "CPU seconds (user + system) spent by the worker's threads, by thread name (the event loop of "
            "the agents is MainThread; librdkafka's threads are rdk:*).",
            labels=["thread"],
        )
        for label, seconds in sorted(cpu_by_thread().items()):
            family.add_metric([label], seconds)
        yield family
