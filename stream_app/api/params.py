"""The query API's parameters: an indicator, an entity (:class:`Where`), a period and a breakdown,
checked against the catalogue; a wrong one raises :class:`BadRequest` with a message naming it and
what is allowed, and nothing stored for it :class:`NotFound`."""

from __future__ import annotations

from dataclasses import dataclass

from stream_app.domain.aggregates import period_by_label, period_frequencies, series_of
from stream_app.domain.calendar import ReportingPeriod, period_of
from stream_app.domain.catalogue import Catalogue, Indicator
from stream_app.domain.entity import EntityKey


class BadRequest(ValueError):  # noqa: N818 - an HTTP 400, named as such
    """A parameter the API cannot answer for (HTTP 400), with a message saying why."""


class NotFound(LookupError):  # noqa: N818 - an HTTP 404, named as such
    """Nothing stored for what was asked (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Where:
    """An entity as the API names it."""

    indicator: Indicator
    region: str
    station: str | None
    series: str

    @property
    def entity(self) -> str:
        return str(EntityKey(self.indicator.code, self.region, self.station))


class RequestParameters:
    """Reads the query API's parameters against the catalogue."""

    catalogue: Catalogue

    def indicator(self, code: str | None) -> Indicator:
        if not code:
            raise BadRequest("missing parameter 'indicator' (an indicator code, e.g. ENV.AQI)")
        found = self.catalogue.indicators.get(code)
        if found is None:
            raise BadRequest(f"unknown indicator {code!r}; GET /api/v1/indicators lists them")
        return found

    def where(self, params: dict[str, str]) -> Where:
        indicator = self.indicator(params.get("indicator"))
        region = params.get("region") or ("VN" if indicator.region_level == "national" else "")
        station = params.get("station") or None
        if station is not None:
            known = self.catalogue.stations.get(station)
            if known is None:
                raise BadRequest(f"unknown station {station!r}")
            region = region or known.region
        if not region:
            raise BadRequest(
                f"missing parameter 'region' ({indicator.code} is reported per {indicator.region_level})"
            )
        current = self.catalogue.current_region(region)
        if current is None:
            raise BadRequest(f"unknown region {region!r} (a province code, or VN)")
        if indicator.region_level == "station" and station is None:
            raise BadRequest(f"{indicator.code} is reported per station: give 'station'")
        return Where(indicator, current, station, series_param(params.get("breakdown")))

    def period(self, indicator: Indicator, label: str | None, now_ms: int) -> ReportingPeriod:
        """A period of the indicator's calendar, by its label (default: the one holding now)."""
        if not label:
            own = period_frequencies(indicator.frequency)[0]
            return period_of(own, indicator.calendar, now_ms, indicator.deadline_day)
        try:
            return period_by_label(label, indicator.calendar, indicator.deadline_day)
        except (ValueError, KeyError):
            raise BadRequest(
                f"period {label!r} is not a period label (2025-07-15, 2025-07, 2025-Q3, 2025-H2, 2025)"
            ) from None


def series_param(breakdown: str | None) -> str:
    """``source=hydro`` (or ``a=1,b=2``) as the series key; empty for the indicator's own series."""
    if not breakdown:
        return ""
    pairs = {}
    for part in breakdown.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise BadRequest(f"breakdown {breakdown!r} is not name=value[,name=value]")
        pairs[name] = value
    return series_of(pairs)
