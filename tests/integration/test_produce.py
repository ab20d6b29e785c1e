"""``stream-app produce`` against the real broker: good rows reach the reporter's topic, bad ones are
reported by line number and counted, and the exit code says whether everything was sent."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream_app.exit_codes import ExitCode
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings

from .support import collect, settings_env

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0_MS = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def reporter_topic(settings: Settings) -> Iterator[Callable[[str], str]]:
    """Factory: the input topic of a reporter in the test's namespace, created if missing; all
    topics made here are deleted afterwards."""
    admin = AdminClient({**confluent_config(settings), "log_level": 3})
    made: list[str] = []

    def make(reporter: str) -> str:
        topic = settings.topic(f"reporter.{reporter.lower()}.observations")
        if topic not in admin.list_topics(timeout=10).topics:
            for future in admin.create_topics(
                [NewTopic(topic, num_partitions=4, replication_factor=1)]
            ).values():
                future.result()
            made.append(topic)
            deadline = time.monotonic() + 10
            while topic not in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
                time.sleep(0.1)
        return topic

    yield make
    if made:
        for future in admin.delete_topics(made, operation_timeout=10).values():
            with contextlib.suppress(Exception):  # best-effort cleanup of a throwaway namespace
                future.result()


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", "produce", *args],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _summary(stdout: str) -> dict[str, int]:
    numbers = {}
    for name in ("rows read", "sent", "failed to parse", "failed delivery"):
        found = re.search(rf"^\s+{name}\s+([\d,]+)", stdout, re.MULTILINE)
        assert found, stdout
        numbers[name] = int(found[1].replace(",", ""))
    return numbers


def _millis(record: dict[str, Any]) -> dict[str, Any]:
    for name in ("event_time", "report_time"):
        record[name] = (record[name] - _EPOCH) // timedelta(milliseconds=1)
    return record


def _traffic(observation_id: str, region: str, value: float | str, **extra: Any) -> dict[str, Any]:
    """A TRF.ACCIDENTS row (``value`` a str: a row of the wrong type, which must be refused)."""
    row = {
        "observation_id": observation_id,
        "indicator": "TRF.ACCIDENTS",
        "region": region,
        "value": value,
        "unit": "cases",
        "event_time": T0_MS,
        "report_time": T0_MS + 3_600_000,
    }
    row.update(extra)
    return row


def test_jsonl_file_good_rows_sent_bad_rows_reported(
    settings: Settings, reporter_topic: Callable[[str], str], tmp_path: Path
) -> None:
    topic = reporter_topic("MPS")
    no_unit = _traffic("mps-4", "01", 1)
    del no_unit["unit"]
    lines = [
        json.dumps(_traffic("mps-1", "01", 3)),  # 1
        '{"observation_id": "mps-2", "indicator": ',  # 2: bad JSON
        json.dumps(  # 3: ISO times, reporter given
            _traffic(
                "mps-3",
                "79",
                5,
                reporter="MPS",
                indicator="TRF.DEATHS",
                unit="persons",
                event_time="2024-11-01T07:00:00+07:00",
                report_time="2024-11-01T09:00:00+07:00",
            )
        ),
        json.dumps(no_unit),  # 4: missing required field
        "",  # 5: blank line, skipped
        json.dumps(_traffic("mps-6", "01", 1, reporter="MAE")),  # 6: another reporter's row
        json.dumps(  # 7: a legacy province code, 2015, a breakdown
            _traffic(
                "mps-7",
                "30",
                2,
                event_time=1_420_070_400_000,
                report_time=1_420_156_800_000,
                breakdowns={"vehicle": "motorbike"},
                revision=1,
                quality="PROVISIONAL",
            )
        ),
        json.dumps(_traffic("mps-8", "01", "many")),  # 8: wrong type
        json.dumps(_traffic("mps-9", "48", 0)),  # 9
    ]
    path = tmp_path / "mps.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = _run(settings, "--reporter", "MPS", str(path))

    assert result.returncode == 1, result.stderr
    assert _summary(result.stdout) == {"rows read": 8, "sent": 4, "failed to parse": 4, "failed delivery": 0}
    assert topic in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [int(line.split(":")[0].split()[1]) for line in errors] == [2, 4, 6, 8]
    assert "line 2: invalid JSON" in result.stderr
    assert "line 4: missing required field 'unit'" in result.stderr
    assert "line 6: reporter 'MAE' in the row, but this file is MPS's" in result.stderr
    assert "line 8: value: expected a number, got str 'many'" in result.stderr

    got = collect(settings, topic, "observation", lambda records: len(records) >= 4, timeout=30)
    assert len(got.records) == 4
    by_id = {r["observation_id"]: _millis(r) for r in got.records}
    assert sorted(by_id) == ["mps-1", "mps-3", "mps-7", "mps-9"]
    keys = [key for key in got.keys if key is not None]
    assert len(keys) == len(got.keys), "every record is keyed"
    assert sorted(keys) == [b"01", b"30", b"48", b"79"]
    first = by_id["mps-1"]
    assert {k: first[k] for k in ("reporter", "indicator", "region", "station", "value", "unit")} == {
        "reporter": "MPS",
        "indicator": "TRF.ACCIDENTS",
        "region": "01",
        "station": None,
        "value": 3.0,
        "unit": "cases",
    }
    assert (first["event_time"], first["report_time"], first["revision"], first["quality"]) == (
        T0_MS,
        T0_MS + 3_600_000,
        0,
        "FINAL",
    )
    assert (by_id["mps-3"]["event_time"], by_id["mps-3"]["report_time"]) == (T0_MS, T0_MS + 7_200_000)
    assert (by_id["mps-3"]["indicator"], by_id["mps-3"]["value"]) == ("TRF.DEATHS", 5.0)
    legacy = by_id["mps-7"]
    assert (legacy["region"], legacy["event_time"], legacy["revision"], legacy["quality"]) == (
        "30",
        1_420_070_400_000,
        1,
        "PROVISIONAL",
    )
    assert legacy["breakdowns"] == {"vehicle": "motorbike"}


def test_csv_file_in_parallel_with_breakdowns(
    settings: Settings, reporter_topic: Callable[[str], str], tmp_path: Path
) -> None:
    topic = reporter_topic("NSMO")
    path = tmp_path / "nsmo.csv"
    path.write_text(
        "observation_id,reporter,indicator,region,value,unit,event_time,report_time,quality,breakdown.source\n"
        f"s-hydro,,PWR.SOURCE_SHARE,VN,31.5,%,{T0_MS},{T0_MS},,hydro\n"  # 2
        f"s-coal,NSMO,PWR.SOURCE_SHARE,VN,48.2,%,{T0_MS},{T0_MS},FINAL,coal\n"  # 3
        f"s-bad,,PWR.SOURCE_SHARE,VN,lots,%,{T0_MS},{T0_MS},,gas\n"  # 4: bad number
        "gwh,,PWR.OUTPUT_GWH,VN,871.2,GWh,2024-11-01T07:00:00+07:00,2024-11-02T08:00:00+07:00,,\n"  # 5
        f"evn,EVN,PWR.OUTPUT_GWH,VN,870,GWh,{T0_MS},{T0_MS},,\n"  # 6: another reporter
        "short,,PWR.PEAK_MW,VN\n",  # 7: too few cells
        encoding="utf-8",
    )

    result = _run(
        settings, "--reporter", "nsmo", str(path), "--workers", "2", "--batch", "2", "--no-progress"
    )

    assert result.returncode == 1, result.stderr
    assert _summary(result.stdout) == {"rows read": 6, "sent": 3, "failed to parse": 3, "failed delivery": 0}
    assert "line 4: value: not a number: 'lots'" in result.stderr
    assert "line 6: reporter 'EVN' in the row, but this file is NSMO's" in result.stderr
    assert "line 7: 4 cells, the header has 10 columns" in result.stderr

    got = collect(settings, topic, "observation", lambda records: len(records) >= 3, timeout=30)
    by_id = {r["observation_id"]: _millis(r) for r in got.records}
    assert sorted(by_id) == ["gwh", "s-coal", "s-hydro"]
    assert set(got.keys) == {b"VN"}
    assert by_id["s-hydro"]["breakdowns"] == {"source": "hydro"}
    assert by_id["s-coal"]["breakdowns"] == {"source": "coal"}
    assert (by_id["s-hydro"]["reporter"], by_id["s-hydro"]["quality"], by_id["s-hydro"]["value"]) == (
        "NSMO",
        "FINAL",
        31.5,
    )
    gwh = by_id["gwh"]
    assert (gwh["event_time"], gwh["report_time"], gwh["breakdowns"], gwh["value"]) == (
        T0_MS,
        T0_MS + 25 * 3_600_000,
        {},
        871.2,
    )


def test_clean_file_exits_0_and_a_missing_topic_exits_78(
    settings: Settings, reporter_topic: Callable[[str], str], tmp_path: Path
) -> None:
    path = tmp_path / "mps.jsonl"
    path.write_text(json.dumps(_traffic("ok-1", "01", 2)) + "\n", encoding="utf-8")

    missing = _run(settings, "--reporter", "MPS", str(path))
    assert missing.returncode == ExitCode.CONFIG
    assert "does not exist" in missing.stderr

    topic = reporter_topic("MPS")
    result = _run(settings, "--reporter", "MPS", str(path))
    assert result.returncode == 0, result.stderr
    assert _summary(result.stdout) == {"rows read": 1, "sent": 1, "failed to parse": 0, "failed delivery": 0}
    got = collect(settings, topic, "observation", lambda records: len(records) >= 1, timeout=30)
    assert [r["observation_id"] for r in got.records] == ["ok-1"]

    unknown = _run(settings, "--reporter", "XYZ", str(path))
    assert unknown.returncode == ExitCode.USAGE
    assert "unknown reporter 'XYZ'" in unknown.stderr
