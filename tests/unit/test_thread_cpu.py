"""CPU time by thread for /metrics: /proc's stat lines read, labels bounded."""

from __future__ import annotations

import threading
import time

from stream_app.ops.threads import cpu_by_thread, task_cpu, thread_label


def test_a_stat_line_whose_name_holds_spaces_and_parentheses() -> None:
    stat = "4242 (rdk:broker (1) x) S 1 1 1 0 -1 4194368 10 0 0 0 250 50 0 0 20 0 9 0 100 0 0"
    name, seconds = task_cpu(stat)
    assert name == "rdk:broker (1) x"
    assert seconds > 0
    assert abs(seconds - task_cpu(stat.replace(" 250 50 ", " 500 100 "))[1] / 2) < 1e-9


def test_labels_drop_trailing_numbers() -> None:
    assert thread_label("rdk:broker1") == "rdk:broker"
    assert thread_label("Thread-12") == "Thread"
    assert thread_label("MainThread") == "MainThread"
    assert thread_label("42") == "unnamed"


def test_a_busy_thread_is_seen_under_its_python_name() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    worker = threading.Thread(target=spin, name="busy-test-thread")
    worker.start()
    try:
        time.sleep(0.3)
        seen = cpu_by_thread()
    finally:
        stop.set()
        worker.join()
    assert seen.get("busy-test-thread", 0.0) > 0.0
    assert "MainThread" in seen
