"""Forecasts: additive Holt-Winters with two seasons (a day and a week; Taylor 2003, "double seasonal
Holt-Winters") and a trend, over hourly usage; a back-test on the history itself (MAPE).

Level L, trend T, daily season d (24 h) and weekly season w (168 h); for each hour x:
  prediction = L + T + d[t % 24] + w[t % 168];  L' = a(x - d - w) + (1 - a)(L + T);  T' = b(L' - L) + (1 - b)T;
  d' = g(x - L' - w) + (1 - g)d;  w' = e(x - L' - d') + (1 - e)w.
Initial values: with 8 days or more, level and trend from the first and last whole week's means and the weekly
season from the first week's day means (else the first two days, weekly season 0); daily season = the days'
mean profile. The band is +- z x the one-step residuals' standard deviation, widened by
sqrt(1 + k / 24) k hours ahead. statsmodels would do this but is heavy (scipy, pandas); this is ~60 lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

DAY_HOURS = 24
WEEK_HOURS = 168


class ForecastSettings(BaseModel, extra="forbid"):
    alpha: float = Field(0.1, gt=0, lt=1, description="level")
    beta: float = Field(0.002, ge=0, lt=1, description="trend")
    gamma: float = Field(0.25, ge=0, lt=1, description="daily season")
    delta: float = Field(0.25, ge=0, lt=1, description="weekly season")
    horizon_weeks: int = Field(4, ge=1, le=26)
    band_z: float = Field(1.96, gt=0, description="band half-width in residual standard deviations")
    train_days: int = Field(10, ge=2, description="back-test: train on these first days, score the rest")


class Fit(BaseModel):
    forecast: list[float]
    sigma: float = Field(description="standard deviation of the one-step residuals")


def holt_winters(series: Sequence[float], *, horizon: int, settings: ForecastSettings) -> Fit:
    """Fit over `series` (hourly) and forecast `horizon` hours; needs at least 2 days."""
    if len(series) < 2 * DAY_HOURS:
        raise ValueError(f"{len(series)} hours of history: a forecast needs at least {2 * DAY_HOURS}")
    a, b, g, e = settings.alpha, settings.beta, settings.gamma, settings.delta
    days = len(series) // DAY_HOURS
    day_means = [sum(series[i * DAY_HOURS:(i + 1) * DAY_HOURS]) / DAY_HOURS for i in range(days)]
    level, trend, weekly = _initial_level_trend_week(day_means)
    daily = [sum(series[i * DAY_HOURS + h] - day_means[i] for i in range(days)) / days for h in range(DAY_HOURS)]
    residuals = []
    for t, x in enumerate(series):
        d, w = daily[t % DAY_HOURS], weekly[t % WEEK_HOURS]
        if t >= DAY_HOURS:
            residuals.append(x - (level + trend + d + w))
        new_level = a * (x - d - w) + (1 - a) * (level + trend)
        trend = b * (new_level - level) + (1 - b) * trend
        level = new_level
        daily[t % DAY_HOURS] = g * (x - level - w) + (1 - g) * d
        weekly[t % WEEK_HOURS] = e * (x - level - daily[t % DAY_HOURS]) + (1 - e) * w
    n = len(series)
    forecast = [max(0.0, level + k * trend + daily[(n + k - 1) % DAY_HOURS] + weekly[(n + k - 1) % WEEK_HOURS])
                for k in range(1, horizon + 1)]
    sigma = math.sqrt(sum(r * r for r in residuals) / len(residuals)) if residuals else 0.0
    return Fit(forecast=forecast, sigma=sigma)


def _initial_level_trend_week(day_means: Sequence[float]) -> tuple[float, float, list[float]]:
    """Level, trend per hour and weekly season at the first hour. With 8 days or more: the trend from the first and
    the last whole week's means, the weekly season from the first week's day means; otherwise from two days."""
    if len(day_means) < 8:
        return day_means[0], (day_means[1] - day_means[0]) / DAY_HOURS, [0.0] * WEEK_HOURS
    first, last = sum(day_means[:7]) / 7, sum(day_means[-7:]) / 7
    trend = (last - first) / ((len(day_means) - 7) * DAY_HOURS)
    weekly = [day_means[h // DAY_HOURS] - first - trend * (h - WEEK_HOURS / 2) for h in range(WEEK_HOURS)]
    return first - trend * WEEK_HOURS / 2, trend, weekly


def mape(actual: Sequence[float], predicted: Sequence[float]) -> float | None:
    """Mean absolute percentage error in %, over the points whose actual value is not ~0 (None: none is)."""
    scale = max((abs(x) for x in actual), default=0.0)
    pairs = [(x, p) for x, p in zip(actual, predicted) if abs(x) > 1e-9 + scale * 1e-6]
    if not pairs:
        return None
    return 100.0 * sum(abs(x - p) / abs(x) for x, p in pairs) / len(pairs)


def back_test(series: Sequence[float], settings: ForecastSettings) -> float | None:
    """Train on the first `train_days`, forecast the rest, MAPE (None: too short, or nothing to score)."""
    train = settings.train_days * DAY_HOURS
    if len(series) <= train:
        return None
    fit = holt_winters(series[:train], horizon=len(series) - train, settings=settings)
    return mape(series[train:], fit.forecast)


class SeriesForecast(BaseModel):
    """A namespace's or service's usage: history (hourly), forecast, band, back-test."""

    name: str
    resource: str = Field(description="cpu (cores) or memory (bytes)")
    start_unix: float = Field(description="the first history hour")
    history: list[float]
    forecast: list[float]
    sigma: float = Field(description="standard deviation of the one-step residuals")
    band_z: float = 1.96
    mape_percent: float | None
    peak_now: float
    peak_forecast: float

    @property
    def band(self) -> list[float]:
        """Half-width of the band per forecast hour: z x sigma x sqrt(1 + k / 24), k hours ahead."""
        return [self.band_z * self.sigma * math.sqrt(1 + k / DAY_HOURS) for k in range(1, len(self.forecast) + 1)]

    @property
    def growth(self) -> float:
        """Forecast peak over today's (1.0 when there was no usage)."""
        return self.peak_forecast / self.peak_now if self.peak_now > 0 else 1.0


def _short(value: float) -> float:
    """4 significant digits: plenty for a plot, and a step's output stays small."""
    return float(f"{value:.4g}")


def forecast_series(name: str, resource: str, series: Sequence[float], *, start_unix: float,
                    settings: ForecastSettings) -> SeriesForecast | None:
    """None when the history is shorter than two days."""
    if len(series) < 2 * DAY_HOURS:
        return None
    horizon = settings.horizon_weeks * WEEK_HOURS
    fit = holt_winters(series, horizon=horizon, settings=settings)
    recent = series[-WEEK_HOURS:]
    return SeriesForecast(
        name=name, resource=resource, start_unix=start_unix, history=[_short(x) for x in series],
        forecast=[_short(x) for x in fit.forecast], sigma=fit.sigma, band_z=settings.band_z,
        mape_percent=back_test(series, settings), peak_now=max(recent),
        peak_forecast=max(fit.forecast[-WEEK_HOURS:]),
    )
