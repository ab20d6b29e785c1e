"""stream_app.topics.load_topics: the declarations file, namespaced, checked entry by entry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stream_app.config.blueprint import (
    KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    REPORTER_BATCH_SLACK_BYTES,
    load_blueprint,
    reporter_max_message_bytes,
)
from stream_app.config.topics import ROLES, load_topics
from stream_app.domain.catalogue import DOMAINS
from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings
from stream_app.state.keys import STATE_TTL_S

TOPICS_FILE = Settings.model_construct().topics_file


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topics.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_real_declarations_load() -> None:
    specs = load_topics(TOPICS_FILE)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert {s.role for s in specs} <= ROLES
    assert {"input", "dead_letter", "repartition", "alerts", "consolidated"} <= {s.role for s in specs}
    for spec in specs:
        assert spec.partitions >= 1
        assert spec.replication_factor >= 1
        if spec.role in {"input", "dead_letter"}:
            assert spec.reporter
    mae = next(s for s in specs if s.name == "reporter.mae.observations")
    assert (mae.role, mae.reporter) == ("input", "MAE")
    assert all(isinstance(v, str) for s in specs for v in s.config.values())


def test_namespace_is_prefixed() -> None:
    plain = load_topics(TOPICS_FILE)
    spaced = load_topics(TOPICS_FILE, "t0fd0d634d4.")
    assert [s.name for s in spaced] == [f"t0fd0d634d4.{s.name}" for s in plain]
    assert [(s.role, s.partitions, s.config, s.reporter) for s in spaced] == [
        (s.role, s.partitions, s.config, s.reporter) for s in plain
    ]


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[defaults]
partitions = 6
replication_factor = 3

[[topic]]
name = "a"
role = "alerts"

[[topic]]
name = "b"
role = "consolidated"
partitions = 2
config = { "retention.ms" = 1000, "cleanup.policy" = "compact" }
doc = "B"
""",
    )
    a, b = load_topics(path, "ns.")
    assert (a.name, a.partitions, a.replication_factor, a.config, a.reporter) == ("ns.a", 6, 3, {}, None)
    assert (b.name, b.partitions, b.config, b.doc) == (
        "ns.b",
        2,
        {"retention.ms": "1000", "cleanup.policy": "compact"},
        "B",
    )


def test_without_defaults_one_partition_one_replica(tmp_path: Path) -> None:
    (spec,) = load_topics(_write(tmp_path, '[[topic]]\nname = "a"\nrole = "alerts"\n'))
    assert (spec.partitions, spec.replication_factor) == (1, 1)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            '[[topic]]\nname = "a"\nrole = "alerts"\n[[topic]]\nname = "a"\nrole = "consolidated"\n',
            "topic 'a' declared twice",
            id="duplicate-name",
        ),
        pytest.param('[[topic]]\nname = "a"\nrole = "sink"\n', "topic 'a': role 'sink'", id="unknown-role"),
        pytest.param('[[topic]]\nname = "a"\n', "topic 'a': role None", id="missing-role"),
        pytest.param(
            '[[topic]]\nname = "in"\nrole = "input"\n',
            "topic 'in': an input topic needs a reporter",
            id="input",
        ),
        pytest.param(
            '[[topic]]\nname = "in"\nrole = "input"\nreporter = ""\n',
            "an input topic needs a reporter",
            id="input-empty-reporter",
        ),
        pytest.param(
            '[[topic]]\nname = "dlq"\nrole = "dead_letter"\n',
            "dead_letter topic needs a reporter",
            id="dead-letter-without-reporter",
        ),
        pytest.param('[[topic]]\nrole = "alerts"\n', "has no name", id="no-name"),
        pytest.param("[[topic]\nname = 1\n", "line 1", id="invalid-toml"),
    ],
)
def test_bad_declaration_raises_configuration_error(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_topics(path, "ns.")
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nope\.toml"):
        load_topics(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param('partitions = "four"', id="partitions-not-int"),
        pytest.param('config = "x"', id="config-not-table"),
    ],
)
def test_wrongly_typed_value_raises_configuration_error(tmp_path: Path, extra: str) -> None:
    path = _write(tmp_path, f'[[topic]]\nname = "a"\nrole = "alerts"\n{extra}\n')
    with pytest.raises(ConfigurationError, match="'a'"):
        load_topics(path)


# --- per-domain alert topics: one spelling of domain names ---------------------------------------------


def test_every_catalogue_domain_has_exactly_one_alert_topic_named_after_it() -> None:
    domain_topics = [s for s in load_topics(TOPICS_FILE) if s.role == "domain_alerts"]
    assert sorted(s.domain or "" for s in domain_topics) == sorted(DOMAINS)  # one each, and no other
    for spec in domain_topics:
        assert spec.name == f"center.alerts.{spec.domain}"
    # no other topic looks like a domain's alert topic (the other center.alerts.* have their own roles)
    lookalikes = {
        s.name.removeprefix("center.alerts.")
        for s in load_topics(TOPICS_FILE)
        if s.name.startswith("center.alerts.") and s.role != "domain_alerts"
    }
    assert lookalikes == {"active"}
    assert not lookalikes & set(DOMAINS)


def _blueprint_with(tmp_path: Path, edit: Callable[[str], str]) -> None:
    path = tmp_path / "topics.toml"
    path.write_text(edit(TOPICS_FILE.read_text(encoding="utf-8")), encoding="utf-8")
    load_blueprint(Settings.model_construct().model_copy(update={"topics_file": path}))


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        pytest.param(
            lambda text: text.replace('domain = "socio_economic"', 'domain = "socio-economic"'),
            "missing for ['socio_economic']; unknown domains ['socio-economic']",
            id="hyphenated",
        ),
        pytest.param(
            lambda text: text.replace('domain = "justice"', 'domain = "health"'),
            "missing for ['justice']; more than one for ['health']",
            id="twice",
        ),
    ],
)
def test_start_up_refuses_a_domain_topic_the_catalogue_does_not_name(
    tmp_path: Path, edit: Callable[[str], str], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match="every catalogue domain needs exactly one") as info:
        _blueprint_with(tmp_path, edit)
    assert problem in str(info.value)


def test_real_declarations_make_a_blueprint(tmp_path: Path) -> None:
    _blueprint_with(tmp_path, lambda text: text)


def test_the_log_the_state_is_rebuilt_from_outlives_the_state() -> None:
    # `stream-app state rebuild` replays the internal topic: it must keep every record as long as the
    # state keeps an entity (this and the previous reporting year), and never be compacted
    (internal,) = [s for s in load_topics(TOPICS_FILE) if s.role == "repartition"]
    assert int(internal.config["retention.ms"]) >= STATE_TTL_S * 1000
    assert internal.config.get("cleanup.policy", "delete") == "delete"


def test_the_profile_sets_replication_and_its_configs() -> None:
    single = load_topics(TOPICS_FILE)
    cluster = load_topics(TOPICS_FILE, profile="cluster")
    assert {s.replication_factor for s in single} == {1}
    assert {s.replication_factor for s in cluster} == {3}
    assert all(s.config["min.insync.replicas"] == "2" for s in cluster)
    assert all("min.insync.replicas" not in s.config for s in single)
    # everything else is the same declaration
    assert [(s.name, s.partitions, s.role) for s in single] == [
        (s.name, s.partitions, s.role) for s in cluster
    ]
    with pytest.raises(ConfigurationError, match=r"no \[profile.three\]"):
        load_topics(TOPICS_FILE, profile="three")


def test_a_topic_config_wins_over_its_profile(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[profile.cluster]
replication_factor = 3
config = { "min.insync.replicas" = "2", "retention.ms" = "1" }

[[topic]]
name = "a"
role = "alerts"
config = { "retention.ms" = "5" }
""",
    )
    (spec,) = load_topics(path, profile="cluster")
    assert (spec.replication_factor, spec.config) == (3, {"min.insync.replicas": "2", "retention.ms": "5"})


def test_every_reporter_input_topic_takes_no_batch_larger_than_the_intake_accepts() -> None:
    settings = Settings(
        intake_max_record_bytes=2_000_000, intake_max_key_bytes=2_000, output_max_bytes=2_100_000
    )
    blueprint = load_blueprint(settings)
    limit = str(2_000_000 + 2_000 + REPORTER_BATCH_SLACK_BYTES)
    inputs = [*blueprint.input_topics(), *blueprint.bulk_topics()]
    assert len(inputs) == 2 * len(blueprint.catalogue.reporters)
    assert {spec.config["max.message.bytes"] for spec in inputs} == {limit}
    others = [spec for spec in blueprint.topics if spec.role not in ("input", "bulk_input")]
    assert all("max.message.bytes" not in spec.config for spec in others)
    assert reporter_max_message_bytes(settings) == int(limit)


def test_a_reporter_topic_takes_at_least_what_a_producer_batches_by_default() -> None:
    """librdkafka batches up to 1,000,000 bytes by default: a smaller topic limit would refuse a
    reporter's default producer under load (MSG_SIZE_TOO_LARGE)."""
    settings = Settings(intake_max_record_bytes=100_000, intake_max_key_bytes=2_000)
    assert reporter_max_message_bytes(settings) == KAFKA_DEFAULT_MAX_MESSAGE_BYTES
