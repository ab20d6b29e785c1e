"""stream_app.tools.produce: rows of JSONL and CSV files to validated Avro records, malformed rows by line;
the dry run judges each line as the intake would."""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stream_app.domain.catalogue import Catalogue
from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings
from stream_app.tools import produce
from stream_app.tools.produce import Summary, produce_file
from stream_app.tools.rows import (
    Encoded,
    RowEncoder,
    RowError,
    _csv_chunks,
    detect_format,
    iter_csv,
    iter_jsonl,
    iter_rows,
)
from stream_app.wire import codecs
from stream_app.wire.schemas import SchemaRegistry

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0_MS = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)  # as in conftest.py

HEADER = (
    "observation_id,revision,reporter,indicator,region,station,value,unit,event_time,report_time,"
    "quality,period,breakdown.source\n"
)


@pytest.fixture
def encoder(registry: SchemaRegistry) -> RowEncoder:
    return RowEncoder(registry.latest("observation"), "MAE")


def _decoded(registry: SchemaRegistry, item: Encoded | RowError) -> dict[str, Any]:
    assert isinstance(item, Encoded), item
    record = codecs.decode(registry, "observation", item.value)
    for name in ("event_time", "report_time"):
        record[name] = (record[name] - _EPOCH) // timedelta(milliseconds=1)
    return record


def _line(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def _jsonl(*lines: bytes | str) -> list[bytes]:
    return [(line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines]


# --- JSONL -----------------------------------------------------------------------------------------------


def test_jsonl_row_becomes_the_record_keyed_by_station(
    registry: SchemaRegistry, encoder: RowEncoder, make_record: Callable[..., dict[str, Any]]
) -> None:
    record = make_record(breakdowns={"pollutant": "pm2.5"})
    [item] = iter_jsonl(_jsonl(json.dumps(record)), encoder)
    assert isinstance(item, Encoded)
    assert (item.line, item.key) == (1, b"HN-AQ-HOANKIEM")
    assert item.value.startswith(codecs.SINGLE_OBJECT_MARKER)
    decoded = _decoded(registry, item)
    assert {name: decoded[name] for name in record} == record


def test_jsonl_iso_times_defaults_and_region_key(registry: SchemaRegistry, encoder: RowEncoder) -> None:
    line = _line(
        observation_id="o-1",
        indicator="DIS.FOREST_FIRE",
        region="40",
        value=4,
        unit="level",
        event_time="2024-11-01T07:00:00+07:00",
        report_time="2024-11-01T00:01:00Z",
    )
    [item] = iter_jsonl(_jsonl(line), encoder)
    assert isinstance(item, Encoded)
    assert item.key == b"40"
    decoded = _decoded(registry, item)
    assert decoded["event_time"] == T0_MS
    assert decoded["report_time"] == T0_MS + 60_000
    # defaults: the reporter from --reporter, the schema's for the rest
    assert decoded["reporter"] == "MAE"
    assert (decoded["revision"], decoded["quality"], decoded["station"], decoded["period"]) == (
        0,
        "FINAL",
        None,
        None,
    )
    assert decoded["breakdowns"] == {}
    assert decoded["value"] == 4.0


def test_jsonl_time_as_digit_string_and_byte_order_mark(
    registry: SchemaRegistry, encoder: RowEncoder
) -> None:
    line = _line(
        observation_id="o",
        indicator="ENV.AQI",
        region="01",
        value=1.5,
        unit="index",
        event_time=str(T0_MS),
        report_time=T0_MS,
    )
    [item] = iter_jsonl([b"\xef\xbb\xbf" + line + b"\n"], encoder)
    assert _decoded(registry, item)["event_time"] == T0_MS


def test_jsonl_malformed_rows_are_reported_with_their_line_numbers(
    encoder: RowEncoder, make_record: Callable[..., dict[str, Any]]
) -> None:
    good = json.dumps(make_record())
    no_unit = make_record()
    del no_unit["unit"]
    lines = _jsonl(
        good,  # 1
        '{"observation_id": "x", ',  # 2: bad JSON
        json.dumps(make_record(value="high")),  # 3: wrong type
        json.dumps(no_unit),  # 4: missing required field
        "",  # 5: blank, skipped
        "[1, 2]",  # 6: not an object
        json.dumps(make_record(reporter="MPS")),  # 7: another reporter
        json.dumps({**make_record(), "colour": "red"}),  # 8: unknown field
        json.dumps(make_record(event_time="2024-11-01T07:00:00")),  # 9: ISO time without offset
        json.dumps(make_record(revision=1.5)),  # 10: wrong type
        json.dumps(make_record(quality="GOOD")),  # 11: not an enum symbol
        json.dumps(make_record(event_time=True)),  # 12: a bool is not a time
        json.dumps(make_record(breakdowns={"source": 1})),  # 13: map of strings
        good.replace("87.0", "NaN"),  # 14: not finite
        good,  # 15
    )
    items = list(iter_jsonl(lines, encoder))
    assert [i.line for i in items if isinstance(i, Encoded)] == [1, 15]
    errors = {i.line: i.reason for i in items if isinstance(i, RowError)}
    assert sorted(errors) == [2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert errors[2].startswith("invalid JSON")
    assert errors[3] == "value: expected a number, got str 'high'"
    assert errors[4] == "missing required field 'unit'"
    assert errors[6] == "expected a JSON object, got list"
    assert errors[7] == "reporter 'MPS' in the row, but this file is MAE's"
    assert errors[8] == "unknown field(s) 'colour'"
    assert "needs an offset" in errors[9]
    assert errors[10].startswith("revision: expected an integer")
    assert errors[11].startswith("quality: expected one of FINAL, PROVISIONAL, TEST")
    assert errors[12].startswith("event_time: expected epoch milliseconds")
    assert errors[13].startswith("breakdowns: expected an object of strings")
    assert errors[14] == "value: nan is not a finite number"
    assert str(RowError(2, "why")) == "line 2: why"


# --- CSV -------------------------------------------------------------------------------------------------


def test_csv_rows_with_breakdown_columns_iso_and_ms_times(registry: SchemaRegistry) -> None:
    encoder = RowEncoder(registry.latest("observation"), "NSMO")
    text = (
        HEADER
        + f"p-1,,,PWR.SOURCE_SHARE,VN,,31.5,%,2024-11-01T07:00:00+07:00,{T0_MS + 60_000},,,hydro\n"
        + f"p-2,2,NSMO,PWR.OUTPUT_GWH,VN,,871.2,GWh,{T0_MS},{T0_MS},PROVISIONAL,2024-11,\n"
    )
    items = list(iter_csv(io.StringIO(text), encoder))
    assert [i.line for i in items] == [2, 3]
    first, second = (_decoded(registry, i) for i in items)
    assert {name: first[name] for name in [*HEADER.strip().split(",")[:-1], "breakdowns"]} == {
        "observation_id": "p-1",
        "revision": 0,
        "reporter": "NSMO",
        "indicator": "PWR.SOURCE_SHARE",
        "region": "VN",
        "station": None,
        "value": 31.5,
        "unit": "%",
        "event_time": T0_MS,
        "report_time": T0_MS + 60_000,
        "quality": "FINAL",
        "period": None,
        "breakdowns": {"source": "hydro"},
    }
    assert (second["revision"], second["quality"], second["period"], second["breakdowns"]) == (
        2,
        "PROVISIONAL",
        "2024-11",
        {},
    )
    assert isinstance(items[0], Encoded)
    assert items[0].key == b"VN"


def test_csv_columns_in_any_order_and_optional_ones_absent(
    registry: SchemaRegistry, encoder: RowEncoder
) -> None:
    text = (
        "value,unit,indicator,region,station,observation_id,event_time,report_time,breakdown.pollutant\n"
        f"163,index,ENV.AQI,01,HN-AQ-HOANKIEM,a-1,{T0_MS},{T0_MS},pm2.5\n"
    )
    [item] = iter_csv(io.StringIO(text), encoder)
    decoded = _decoded(registry, item)
    assert (decoded["value"], decoded["station"], decoded["breakdowns"]) == (
        163.0,
        "HN-AQ-HOANKIEM",
        {"pollutant": "pm2.5"},
    )
    assert isinstance(item, Encoded)  # as _decoded checked
    assert item.key == b"HN-AQ-HOANKIEM"


def test_csv_malformed_rows_are_reported_with_their_line_numbers(encoder: RowEncoder) -> None:
    good = f"a,0,MAE,ENV.AQI,01,HN-AQ-HOANKIEM,87,index,{T0_MS},{T0_MS},FINAL,,\n"
    text = (
        HEADER  # 1
        + good  # 2
        + good.replace(",87,", ",high,")  # 3: bad number
        + good.replace(",index,", ",,")  # 4: empty required cell
        + "a,0,MAE,ENV.AQI\n"  # 5: too few cells
        + good.replace(f",{T0_MS},FINAL", ",yesterday,FINAL")  # 6: bad time
        + good.replace(",MAE,", ",MPS,")  # 7: another reporter
        + '"multi\nline id",0,MAE,ENV.AQI,01,HN-AQ-HOANKIEM,87,index,'
        + f"{T0_MS},{T0_MS},FINAL,,\n"  # 8-9
        + good.replace(",0,MAE", ",one,MAE")  # 10: bad integer
        + good.replace(",FINAL,", ",BEST,")  # 11: not an enum symbol
        + good.replace(f",{T0_MS},FINAL", ",2024-11-01 07:00,FINAL")  # 12: no offset
        + "\n"  # 13: empty line, skipped
        + good.replace(",87,", ",inf,")  # 14: not finite
        + good  # 15
    )
    items = list(iter_csv(io.StringIO(text), encoder))
    assert [i.line for i in items if isinstance(i, Encoded)] == [2, 8, 15]
    errors = {i.line: i.reason for i in items if isinstance(i, RowError)}
    assert errors == {
        3: "value: not a number: 'high'",
        4: "missing required field 'unit'",
        5: "4 cells, the header has 13 columns",
        6: "report_time: not epoch milliseconds nor an ISO-8601 time: 'yesterday'",
        7: "reporter 'MPS' in the row, but this file is MAE's",
        10: "revision: not an integer: 'one'",
        11: "quality: expected one of FINAL, PROVISIONAL, TEST, got str 'BEST'",
        12: "report_time: ISO-8601 time needs an offset (e.g. +07:00): '2024-11-01 07:00'",
        14: "value: 'inf' is not a finite number",
    }


def test_csv_bad_quoting_is_a_row_error(encoder: RowEncoder) -> None:
    good = f"a,0,MAE,ENV.AQI,01,HN-AQ-HOANKIEM,87,index,{T0_MS},{T0_MS},FINAL,,\n"
    text = HEADER + '"a"b,0,MAE\n' + good
    items = list(iter_csv(io.StringIO(text), encoder))
    assert isinstance(items[0], RowError)
    assert (items[0].line, items[0].reason[:8]) == (2, "bad CSV:")
    assert isinstance(items[1], Encoded)
    assert items[1].line == 3


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (
            "observation_id,indicator,region,value,unit,event_time,report_time,colour\n",
            "unknown column 'colour'",
        ),
        ("observation_id,indicator,region,value,unit,event_time,report_time,unit\n", "'unit' appears twice"),
        (
            "observation_id,indicator,region,value,event_time,report_time\n",
            "required column(s) missing: unit",
        ),
        ("observation_id,indicator,region,value,unit,event_time,report_time,breakdowns\n", "unknown column"),
        ("", "empty CSV file"),
    ],
)
def test_csv_header_problems_stop_the_whole_file(encoder: RowEncoder, header: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="CSV") as info:
        list(iter_csv(io.StringIO(header + "x\n" if header else ""), encoder))
    assert problem in str(info.value)


# --- both ------------------------------------------------------------------------------------------------


def test_format_from_the_extension_or_given() -> None:
    assert detect_format(Path("a/b.jsonl"), None) == "jsonl"
    assert detect_format(Path("b.NDJSON"), None) == "jsonl"
    assert detect_format(Path("b.csv.gz"), None) == "csv"
    assert detect_format(Path("b.txt"), "csv") == "csv"
    with pytest.raises(ConfigurationError, match="--format"):
        detect_format(Path("b.txt"), None)


def test_csv_chunks_never_cut_a_quoted_cell_across_lines() -> None:
    lines = ["h\n", '"a\n', 'b"\n', "c\n", "d\n", '"e""\n', '"\n', "f\n"]
    chunks = list(_csv_chunks(iter(lines[1:]), 2, 1))
    assert [first for first, _ in chunks] == [2, 4, 5, 6, 8]
    assert [len(chunk) for _, chunk in chunks] == [2, 1, 1, 2, 1]


def test_parallel_parsing_gives_the_same_items_in_file_order(
    encoder: RowEncoder, make_record: Callable[..., dict[str, Any]]
) -> None:
    lines = []
    for n in range(1, 30):
        lines.append(json.dumps(make_record(observation_id=f"o-{n}")) if n % 7 else "{broken")
    data = ("\n".join(lines) + "\n").encode()
    sequential = list(iter_rows(io.BytesIO(data), "jsonl", encoder))
    parallel = list(iter_rows(io.BytesIO(data), "jsonl", encoder, workers=2, chunk_rows=4))
    assert parallel == sequential
    assert [i.line for i in sequential if isinstance(i, RowError)] == [7, 14, 21, 28]

    good = f"a,0,MAE,ENV.AQI,01,HN-AQ-HOANKIEM,87,index,{T0_MS},{T0_MS},FINAL,,\n"
    text = HEADER + good * 3 + '"multi\nline",0,MAE\n' + good.replace(",87,", ",x,") + good * 4
    sequential = list(iter_rows(io.BytesIO(text.encode()), "csv", encoder))
    parallel = list(iter_rows(io.BytesIO(text.encode()), "csv", encoder, workers=2, chunk_rows=2))
    assert parallel == sequential
    assert [(i.line, i.reason[:5]) for i in sequential if isinstance(i, RowError)] == [
        (5, "3 cel"),
        (7, "value"),
    ]


def test_summary_exit_code() -> None:
    assert Summary(read=3, sent=3).exit_code == 0
    assert Summary(read=3, sent=2, parse_failed=1).exit_code == 1
    assert Summary(read=3, sent=2, delivery_failed=1).exit_code == 1
    assert Summary(read=3, sent=2).exit_code == 1  # a delivery never confirmed
    assert Summary(read=3, encoded=3, dry_run=True).exit_code == 0
    assert "throughput" in Summary(read=10, elapsed_s=2.0).render()
    assert Summary(read=10, elapsed_s=2.0).rate == 5.0


# --- the command, dry ------------------------------------------------------------------------------------


def _settings() -> Settings:
    return Settings.model_construct()


def _no_kafka(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings naming a broker nobody runs, and a producer that fails the test if ever made."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a dry run must not connect to Kafka")

    monkeypatch.setattr(produce, "Producer", refuse)
    return _settings().model_copy(update={"kafka_bootstrap": "kafka.invalid:9"})


def _dry_run(settings: Settings, catalogue: Catalogue, path: Path, **options: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = produce_file(
        settings, catalogue=catalogue, reporter="MAE", path=path, dry_run=True, out=out, err=err, **options
    )
    return code, out.getvalue(), err.getvalue()


def _verdicts(out: str) -> list[tuple[int, str]]:
    """(line number, ok or reason code) of each ``line N: ...`` of a dry run's report."""
    found = []
    for text in out.splitlines():
        if text.startswith("line "):
            number, verdict = text.removeprefix("line ").split(": ", 2)[:2]
            found.append((int(number), verdict))
    return found


def test_dry_run_reports_each_line_as_the_intake_would_judge_it(
    tmp_path: Path,
    make_record: Callable[..., dict[str, Any]],
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "mae.jsonl"
    lines = [
        json.dumps(make_record(observation_id="ok-1")),  # 1
        json.dumps(make_record(indicator="ENV.NOT_AN_INDICATOR")),  # 2
        json.dumps(make_record(region="VN", station=None)),  # 3: AQI is per station, in a province
        "",  # 4: blank, skipped
        json.dumps(make_record(unit="ppm")),  # 5
        json.dumps(make_record(value=9999.0)),  # 6: outside [0, 500]
        '{"observation_id": "half", ',  # 7: malformed
        json.dumps(make_record(value="high")),  # 8: malformed (not a number)
        json.dumps(make_record(indicator="TRF.ACCIDENTS", unit="cases")),  # 9: not MAE's
        json.dumps(make_record(station="HN-NOWHERE")),  # 10
        json.dumps(make_record(observation_id="ok-2", value=151.0)),  # 11
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, out, err = _dry_run(_no_kafka(monkeypatch), catalogue, path)

    assert code == 1
    assert _verdicts(out) == [
        (1, "ok"),
        (2, "unknown_indicator"),
        (3, "region_not_allowed"),
        (5, "unit_mismatch"),
        (6, "value_out_of_range"),
        (7, "malformed"),
        (8, "malformed"),
        (9, "indicator_not_owned"),
        (10, "unknown_station"),
        (11, "ok"),
    ]
    assert "line 2: unknown_indicator: indicator 'ENV.NOT_AN_INDICATOR' is not in the catalogue" in out
    assert "line 5: unit_mismatch: ENV.AQI is reported in 'index', got 'ppm'" in out
    assert "line 7: malformed: invalid JSON" in out
    assert "line 8: malformed: value: expected a number, got str 'high'" in out
    assert "rows read                 10" in out
    assert "accepted                   2" in out
    assert "failed to parse            2" in out
    assert "dead-lettered              6" in out
    for reason in ("unknown_indicator", "region_not_allowed", "unit_mismatch", "value_out_of_range"):
        assert re.search(rf"^    {reason} +1$", out, re.MULTILINE), out
    assert "would send" not in out
    assert err == ""  # the report is on stdout; not a terminal: no progress bar


def test_dry_run_of_csv_counts_the_header_line(
    tmp_path: Path, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mae.csv"
    rows = [
        "observation_id,indicator,region,station,value,unit,event_time,report_time",  # 1
        f"c-1,ENV.AQI,01,HN-AQ-HOANKIEM,87,index,{T0_MS},{T0_MS}",  # 2
        f"c-2,ENV.NOPE,01,HN-AQ-HOANKIEM,87,index,{T0_MS},{T0_MS}",  # 3
        f"c-3,ENV.AQI,VN,,87,index,{T0_MS},{T0_MS}",  # 4
        f"c-4,ENV.AQI,01,HN-AQ-HOANKIEM,87,µg/m3,{T0_MS},{T0_MS}",  # 5
        f"c-5,ENV.AQI,01,HN-AQ-HOANKIEM,-3,index,{T0_MS},{T0_MS}",  # 6
        f"c-6,ENV.AQI,01,HN-AQ-HOANKIEM,lots,index,{T0_MS},{T0_MS}",  # 7
        "c-7,ENV.AQI,01",  # 8
        f"c-8,ENV.AQI,01,HN-AQ-HOANKIEM,88,index,2024-11-01T07:00:00+07:00,{T0_MS}",  # 9
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    code, out, _err = _dry_run(_no_kafka(monkeypatch), catalogue, path)

    assert code == 1
    assert _verdicts(out) == [
        (2, "ok"),
        (3, "unknown_indicator"),
        (4, "region_not_allowed"),
        (5, "unit_mismatch"),
        (6, "value_out_of_range"),
        (7, "malformed"),
        (8, "malformed"),
        (9, "ok"),
    ]
    assert "line 8: malformed: 3 cells, the header has 8 columns" in out


def test_dry_run_checks_the_bytes_as_sent(
    tmp_path: Path,
    make_record: Callable[..., dict[str, Any]],
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The intake's limits on what arrives (key and record size) apply to the encoded row, as sent."""
    path = tmp_path / "mae.jsonl"
    lines = [
        json.dumps({**make_record(), "report_ref": "r" * 200}),  # 1: a record of some 300 bytes
        json.dumps(make_record(station="S" * 100)),  # 2: the key is the station
        json.dumps(make_record()),  # 3
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = _no_kafka(monkeypatch).model_copy(
        update={"intake_max_record_bytes": 256, "intake_max_key_bytes": 64}
    )

    code, out, _err = _dry_run(settings, catalogue, path)

    assert code == 1
    assert _verdicts(out) == [(1, "oversized"), (2, "key_too_large"), (3, "ok")]


def test_dry_run_reports_every_row_of_a_compressed_file_with_progress(
    tmp_path: Path, make_record: Callable[..., dict[str, Any]], catalogue: Catalogue
) -> None:
    path = tmp_path / "mae.jsonl.gz"
    lines = [json.dumps(make_record(observation_id=f"o-{n}")) for n in range(30)]
    for n in range(3, 30, 4):
        lines[n] = "not json"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")

    code, out, err = _dry_run(_settings(), catalogue, path, progress=True)

    assert code == 1
    verdicts = _verdicts(out)
    assert len(verdicts) == 30  # every line, not only the first 20 problems
    assert [n for n, verdict in verdicts if verdict == "malformed"] == [4, 8, 12, 16, 20, 24, 28]
    assert "rows read                 30" in out
    assert "accepted                  23" in out
    assert "failed to parse            7" in out
    assert "rows/s" in err  # the progress bar, forced on


def test_dry_run_of_a_clean_file_exits_0(
    tmp_path: Path, make_record: Callable[..., dict[str, Any]], catalogue: Catalogue
) -> None:
    path = tmp_path / "mae.jsonl"
    path.write_text(json.dumps(make_record()) + "\n", encoding="utf-8")
    code, out, err = _dry_run(_settings(), catalogue, path)
    assert code == 0
    assert _verdicts(out) == [(1, "ok")]
    assert "dead-lettered              0" in out
    assert err == ""  # not a terminal: no progress bar


def test_summary_of_a_dry_run() -> None:
    clean = Summary(read=2, encoded=2, accepted=2, dry_run=True)
    assert clean.exit_code == 0
    refused = Summary(read=3, encoded=3, accepted=1, dry_run=True)
    refused.rejected.update(["unit_mismatch", "unit_mismatch"])
    assert refused.exit_code == 1
    assert "    unit_mismatch            2" in refused.render()
    assert Summary(read=1, parse_failed=1, dry_run=True).exit_code == 1


def test_sending_prints_the_first_20_errors_and_counts_all(
    tmp_path: Path, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    def send_nowhere(
        _settings: Settings, _topic: str, rows: Any, session: Any, _encoder: Any, *, batch: int
    ) -> None:
        session.consume(rows, lambda _item: None)  # what _send does, without a broker

    monkeypatch.setattr(produce, "_send", send_nowhere)
    path = tmp_path / "bad.jsonl"
    path.write_text("x\n" * 25, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = produce_file(_settings(), catalogue=catalogue, reporter="MAE", path=path, out=out, err=err)
    assert code == 1
    printed = err.getvalue().splitlines()
    assert printed[0].startswith("line 1: ")
    assert printed[19].startswith("line 20: ")
    assert printed[20] == "... and 5 more malformed rows"
    assert "failed to parse           25" in out.getvalue()


def test_usage_problems_raise_configuration_errors(tmp_path: Path, catalogue: Catalogue) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="unknown reporter 'XYZ'"):
        produce_file(_settings(), catalogue=catalogue, reporter="XYZ", path=path, dry_run=True)
    with pytest.raises(ConfigurationError, match="no such file"):
        produce_file(
            _settings(), catalogue=catalogue, reporter="MAE", path=tmp_path / "missing.jsonl", dry_run=True
        )
    with pytest.raises(ConfigurationError, match="--batch"):
        produce_file(_settings(), catalogue=catalogue, reporter="MAE", path=path, batch=0, dry_run=True)
