"""The pure parts of ``stream-app reporter`` and ``stream-app group reset``: which topics, grants and
client settings onboarding one reporter means, what an outcome tells the audit trail and a person, and
how a reset's positions are planned."""

from __future__ import annotations

import pytest

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.exceptions import ConfigurationError
from stream_app.kafka import acl
from stream_app.settings import Settings
from stream_app.tools import group, reporter


@pytest.fixture(scope="module")
def blueprint() -> Blueprint:
    settings = Settings.model_construct().model_copy(
        update={
            "topic_namespace": "ns.",
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": "admin",
        }
    )
    return load_blueprint(settings)


def test_a_reporters_topics_are_its_four_declared_ones(blueprint: Blueprint) -> None:
    specs = reporter.reporter_topics(blueprint, "MAE")
    assert sorted(s.role for s in specs) == ["bulk_input", "dead_letter", "input", "reporter_directives"]
    assert {s.name for s in specs} == {
        f"ns.reporter.mae.{suffix}" for suffix in ("observations", "bulk", "dlq", "directives")
    }


def test_an_unknown_reporter_is_a_configuration_error_naming_the_catalogue(blueprint: Blueprint) -> None:
    with pytest.raises(ConfigurationError, match=r"'NOPE' is not in the catalogue.*reporters\.toml"):
        reporter.reporter_topics(blueprint, "NOPE")


def test_onboarding_grants_its_own_rights_and_the_apps_and_sres_on_its_topics_only(
    blueprint: Blueprint,
) -> None:
    names = [s.name for s in reporter.reporter_topics(blueprint, "MAE")]
    keep = acl.concerning("User:mae", names)
    mine = {g for g in acl.grants(blueprint) if keep(g)}
    assert {g.principal for g in mine} == {"User:mae", "User:stream-app", "User:sre"}
    assert all(g.name in names or g.principal == "User:mae" for g in mine)
    writes = {g.name for g in mine if g.principal == "User:mae" and g.operation == "WRITE"}
    assert writes == {"ns.reporter.mae.observations", "ns.reporter.mae.bulk"}
    group_grant = acl.Grant("User:mae", "GROUP", "ns.reporter.mae.", "PREFIXED", "READ")
    assert group_grant in mine
    assert not any(g.principal == "User:mps" or "reporter.mps." in g.name for g in mine)


def test_client_settings_name_the_reporters_user_and_topics_and_the_password_only_when_given(
    blueprint: Blueprint,
) -> None:
    specs = reporter.reporter_topics(blueprint, "MAE")
    shown = reporter.client_settings(blueprint.settings, "MAE", specs, "s3cret")
    assert shown["properties"]["sasl.username"] == "mae"
    assert shown["properties"]["sasl.mechanism"] == "SCRAM-SHA-512"
    assert shown["properties"]["sasl.password"] == "s3cret"
    assert shown["topics"] == {
        "live": "ns.reporter.mae.observations",
        "bulk": "ns.reporter.mae.bulk",
        "dead_letters": "ns.reporter.mae.dlq",
        "directives": "ns.reporter.mae.directives",
    }
    assert shown["group_prefix"] == "ns.reporter.mae."
    assert (
        "sasl.password" not in reporter.client_settings(blueprint.settings, "MAE", specs, None)["properties"]
    )


def test_an_outcome_with_nothing_done_is_unchanged_and_the_audit_never_carries_the_password(
    blueprint: Blueprint,
) -> None:
    specs = reporter.reporter_topics(blueprint, "MAE")
    quiet = reporter.Outcome("add", "MAE", "mae", dry_run=False)
    assert not quiet.changed
    assert "nothing to change" in "\n".join(reporter.text(quiet))
    made = reporter.Outcome("add", "MAE", "mae", dry_run=False, credential="created")
    made.client = reporter.client_settings(blueprint.settings, "MAE", specs, "s3cret")
    assert made.changed
    assert "s3cret" not in repr(made.audit_details())
    assert "  sasl.password=s3cret" in reporter.text(made)  # printed once, to the operator


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2025-10-20T00:00:00+07:00", 1760893200000), ("2025-10-20T00:00:00Z", 1760918400000)],
)
def test_a_reset_moment_is_an_iso_time_with_its_offset(text: str, expected: int) -> None:
    assert group.moment_ms(text) == expected


@pytest.mark.parametrize("text", ["2025-10-20T00:00:00", "yesterday"])
def test_a_reset_moment_without_an_offset_or_unreadable_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="--to-datetime"):
        group.moment_ms(text)


def test_a_reset_goes_to_the_first_record_at_the_moment_or_the_end_when_there_is_none() -> None:
    moves = group.plan_moves(committed={0: 120, 1: None}, found={1: -1, 0: 100}, ends={0: 130, 1: 55})
    assert moves == [group.Move(0, 120, 100), group.Move(1, None, 55)]
    assert [m.records for m in moves] == [20, None]  # 20 records read again; never committed: unknown
