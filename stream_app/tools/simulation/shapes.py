"""Shapes that simulated values are made of: growth tables, seasons, random episodes, holidays.

Pure and deterministic: every random draw is seeded by (seed, name, date or year), so a day's values
depend only on the seed and the date, whatever range is generated.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass
from datetime import date
from typing import Final

Series = tuple[tuple[float, float], ...]


def words(text: str, sep: str | None = None) -> list[str]:
    """The items of a compact table written as text."""
    return [item.strip() for item in text.split(sep)]


def series(text: str) -> Series:
    """``"x y, x y, ..."`` as a table of points (for :func:`interp`)."""
    return tuple((float(x), float(y)) for x, y in (point.split() for point in text.split(",")))


def interp(table: Series, x: float) -> float:
    """Piecewise-linear through ``table`` (sorted by x), flat beyond its ends."""
    if x <= table[0][0]:
        return table[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(table):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return table[-1][1]


def season(doy: int, peak: float, sigma: float) -> float:
    """1 at day-of-year ``peak``, a Gaussian bump of width ``sigma`` days, wrapping around the year."""
    distance = abs(doy - peak) % 365.25
    distance = min(distance, 365.25 - distance)
    return math.exp(-0.5 * (distance / sigma) ** 2)


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


@dataclass(frozen=True, slots=True)
class Spec:
    """How many episodes a year, between which days of the year, how high and how wide."""

    count: tuple[int, int]
    doy: tuple[int, int]
    height: tuple[float, float]
    width: tuple[float, float]


@functools.lru_cache(maxsize=8192)
def episodes(seed: int, name: str, year: int, spec: Spec) -> tuple[tuple[int, float, float], ...]:
    """Episodes (centre ordinal, width in days, height) of one year, fixed by seed, name and year."""
    rng = random.Random(f"{seed}|episodes|{name}|{year}")
    start = date(year, 1, 1).toordinal() - 1
    return tuple(
        (start + rng.randint(*spec.doy), rng.uniform(*spec.width), rng.uniform(*spec.height))
        for _ in range(rng.randint(*spec.count))
    )


def bump(seed: int, name: str, day: date, spec: Spec) -> float:
    """The sum of this and last year's episodes at ``day`` (Gaussian shapes)."""
    ordinal, total = day.toordinal(), 0.0
    for year in (day.year - 1, day.year):
        for centre, width, height in episodes(seed, name, year, spec):
            distance = (ordinal - centre) / width
            if -4 < distance < 4:
                total += height * math.exp(-0.5 * distance * distance)
    return total


@functools.lru_cache(maxsize=4096)
def year_factor(seed: int, name: str, year: int, low: float, high: float) -> float:
    """A factor drawn once per year (a wet or a dry year)."""
    return random.Random(f"{seed}|year|{name}|{year}").uniform(low, high)


@functools.lru_cache(maxsize=4096)
def fixed_offset(seed: int, name: str, sigma: float) -> float:
    """A per-entity offset that never changes (a province's own level)."""
    return random.Random(f"{seed}|offset|{name}").gauss(0.0, sigma)


# Lunar New Year (Tết) dates, for holiday effects.
_TET: Final = {
    d.year: (d.month, d.day)
    for d in map(
        date.fromisoformat,
        words(
            """2010-02-14 2011-02-03 2012-01-23 2013-02-10 2014-01-31 2015-02-19 2016-02-08 2017-01-28
        2018-02-16 2019-02-05 2020-01-25 2021-02-12 2022-02-01 2023-01-22 2024-02-10 2025-01-29
        2026-02-17 2027-02-06 2028-01-26""",
        ),
    )
}


def tet(year: int) -> date:
    """Lunar New Year's day of ``year`` (5 February beyond the table)."""
    return date(year, *_TET.get(year, (2, 5)))


def days_from_tet(day: date) -> int:
    """Days since this year's Tết (negative before it)."""
    return (day - tet(day.year)).days
