"""Dead letters: summarised by reason, and replayed into the pipeline once their cause is fixed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import (
    collect,
    decode_public,
    metric_value,
    observation,
    produce,
    settings_env,
    to_the_end,
    wait_consumed,
)

NEW_STATION = """
[[station]]
code = "HN-AQ-NEWSITE"
name = "A new air-quality station, added after its first records arrived"
region = "01"
kind = "air_quality"
"""


def _cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args],
        env={**os.environ, **settings_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _catalogue_with_new_station(settings: Settings, tmp_path: Path) -> Path:
    fixed = tmp_path / "catalogue"
    shutil.copytree(settings.catalogue_dir, fixed)
    station_file = next(
        p for p in sorted(fixed.glob("*.toml")) if "[[station]]" in p.read_text(encoding="utf-8")
    )
    with station_file.open("a", encoding="utf-8") as handle:
        handle.write(NEW_STATION)
    return fixed


def test_replayed_record_is_accepted_after_its_cause_is_fixed(
    settings: Settings, blueprint: Blueprint, start_worker: Any, tmp_path: Path
) -> None:
    worker = start_worker(settings)
    schema = blueprint.schemas.latest("observation")
    early = observation(station="HN-AQ-NEWSITE", value=88.0, observation_id="new-site-1")
    produce(settings, blueprint.input_topic("MAE").name, [(b"HN-AQ-NEWSITE", codecs.encode(schema, early))])
    dlq_topic = blueprint.dead_letter_topic("MAE").name
    dead = collect(settings, dlq_topic, "dead_letter", lambda r: len(r) >= 1)
    assert [d["reason"] for d in dead.records] == ["unknown_station"]

    inspected = _cli(settings, "dlq", "inspect", "--reporter", "MAE")
    assert inspected.returncode == 0, inspected.stderr
    assert "unknown_station" in inspected.stdout
    assert "1 dead letters" in inspected.stdout

    # The fix: the catalogue learns the station; a worker with the new catalogue takes over.
    worker.stop()
    fixed = _catalogue_with_new_station(settings, tmp_path)
    fixed_settings = settings.model_copy(update={"catalogue_dir": fixed})
    start_worker(fixed_settings, STREAM_APP_CATALOGUE_DIR=str(fixed))

    dry = _cli(
        fixed_settings,
        "dlq",
        "replay",
        "--reporter",
        "MAE",
        "--reason",
        "unknown_station",
        "--dry-run",
        STREAM_APP_CATALOGUE_DIR=str(fixed),
    )
    assert dry.returncode == 0, dry.stderr
    assert "would replay 1 of 1" in dry.stdout
    replayed = _cli(
        fixed_settings,
        "dlq",
        "replay",
        "--reporter",
        "MAE",
        "--reason",
        "unknown_station",
        STREAM_APP_CATALOGUE_DIR=str(fixed),
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 of 1" in replayed.stdout

    consolidated = collect(
        settings,
        blueprint.topic_by_role("consolidated").name,
        "consolidated",
        lambda r: any(row["station"] == "HN-AQ-NEWSITE" for row in r),
    )
    row = next(r for r in consolidated.records if r["station"] == "HN-AQ-NEWSITE")
    assert (row["latest_value"], row["count"]) == (88.0, 1)
    # Accepted this time: the dead-letter topic still holds only the first rejection (read to its end now,
    # not for a fixed 3 s: the replayed record is consolidated, so the intake accepted it, and it is the
    # last record the worker was given)
    again = [m for m in to_the_end(settings, dlq_topic) if m.value() is not None]
    assert len(again) == 1
    # The replay is in the audit trail, with who ran it (the CLI's Kafka principal).
    trail = collect(settings, blueprint.topic_by_role("audit").name, "audit", lambda r: len(r) >= 1)
    replays = [a for a in trail.records if a["action"] == "dlq_replay"]
    assert [(a["subject"], a["source"], a["details"]["sent"]) for a in replays] == [(dlq_topic, "cli", "1")]
    assert replays[0]["actor"] == (settings.kafka_sasl_username or "anonymous")


def test_older_revision_after_a_correction_is_dead_lettered_as_stale(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    worker = start_worker(settings)
    schema = blueprint.schemas.latest("observation")
    topic = blueprint.input_topic("MAE").name
    corrected = observation(observation_id="rev-1", revision=2, value=60.0)
    produce(settings, topic, [(b"k", codecs.encode(schema, corrected))])
    collect(settings, blueprint.topic_by_role("consolidated").name, "consolidated", lambda r: len(r) >= 1)
    older = {**corrected, "revision": 1, "value": 70.0}
    same = dict(corrected)
    produce(settings, topic, [(b"k", codecs.encode(schema, older)), (b"k", codecs.encode(schema, same))])

    dead = collect(settings, blueprint.dead_letter_topic("MAE").name, "dead_letter", lambda r: len(r) >= 1)
    assert [d["reason"] for d in dead.records] == ["stale_revision"]
    assert dead.records[0]["source_topic"] == blueprint.topic_by_role("repartition").name
    assert codecs.decode(blueprint.schemas, "observation", dead.records[0]["original"])["revision"] == 1
    # every record consumed and committed (the worker publishes before it commits), rather than a fixed 3 s
    internal = blueprint.topic_by_role("repartition").name
    wait_consumed(settings, blueprint, [topic, internal])
    rows = [
        decode_public(blueprint, "consolidated", m.value() or b"")
        for m in to_the_end(settings, blueprint.topic_by_role("consolidated").name)
    ]
    assert rows[-1]["count"] == 1  # neither the stale revision nor the duplicate was counted
    assert rows[-1]["latest_value"] == 60.0
    exposition = worker.metrics()
    assert metric_value(exposition, "stream_app_duplicate_observations_total") == 1
    assert (
        metric_value(exposition, "stream_app_records_rejected_total", reporter="MAE", reason="stale_revision")
        == 1
    )
