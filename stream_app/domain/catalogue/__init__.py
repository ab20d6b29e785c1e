"""The indicator catalogue: who may report what, in which unit, range and period, with which levels.

Loaded from the TOML files of ``catalogue/`` (indicators, reporters, regions, stations) and checked
at start: a wrong entry stops the worker with a ``ConfigurationError`` naming the file, the entry and
the problem, rather than letting records be judged against a wrong table for hours.

The entries as data: :mod:`~stream_app.domain.catalogue.entries`; reading and checking the files:
:mod:`~stream_app.domain.catalogue.loader`.

Regions cover both administrative maps: the 34 provincial units in force from 2025-07-01 and the 63
legacy GSO provinces that history since 2010 is reported in, each with the unit it merged into.
"""

from __future__ import annotations

from stream_app.domain.catalogue import entries
from stream_app.domain.catalogue.entries import *  # noqa: F403 - the entries, listed once in entries.__all__
from stream_app.domain.catalogue.loader import load_catalogue

__all__ = ["load_catalogue"]
__all__ += entries.__all__
