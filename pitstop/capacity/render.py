"""The capacity report as one self-contained HTML page (no script, no external file): inline SVG plots of the
node plan, cost per team, each namespace's forecast with its band and, per service, usage against today's
request and the recommendation (the services with the largest changes)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from .collection import PLOTTED_WORKLOADS, RegionCapacity
from .forecast import SeriesForecast
from .markdown import change, cores, mib
from .report import CapacityReport, RegionReport
from .workloads import WorkloadRecommendation

MIB = 2**20
PLOT_EVERY_HOURS = 3
TOP_GROWTH = 10
W, H, PAD = 520, 180, 36
COLORS = {"usage": "#1f77b4", "request": "#d62728", "recommended": "#2ca02c", "forecast": "#ff7f0e",
          "band": "#ffbb78", "requests": "#9467bd", "bound": "#444"}

Line = tuple[str, str, list[float], int]  # (label, colour, values one per x step, first x step)


def _scale(values: Sequence[float], lo: float, hi: float, size: float, invert: bool = False) -> list[float]:
    span = (hi - lo) or 1.0
    return [(size - (v - lo) / span * size) if invert else (v - lo) / span * size for v in values]


def line_chart(title: str, lines: Sequence[Line], *, unit: str, band: tuple[int, list[float], list[float]] | None = None,
               levels: Sequence[tuple[str, str, float]] = ()) -> str:
    """Lines over a shared x axis (the longest line's points), optional band (offset, low, high), level lines."""
    n = max((offset + len(v) for _, _, v, offset in lines), default=1)
    values = [x for _, _, v, _ in lines for x in v] + [y for _, _, y in levels]
    if band:
        values += band[2]
    hi = max(values, default=1.0) * 1.05 or 1.0

    def xs(count: int, offset: int = 0) -> list[float]:
        return [PAD + (offset + i) / max(1, n - 1) * (W - PAD - 8) for i in range(count)]

    def ys(v: Sequence[float]) -> list[float]:
        return [8 + y for y in _scale(v, 0.0, hi, H - PAD - 8, invert=True)]

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" aria-label="{escape(title)}">',
             f'<text x="{PAD}" y="12" font-size="11">{escape(title)}</text>',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 8}" y2="{H - PAD}" stroke="#999"/>',
             f'<text x="2" y="24" font-size="9">{hi:.3g} {escape(unit)}</text><text x="2" y="{H - PAD}" font-size="9">0</text>']
    if band:
        offset, low, high = band
        x = xs(len(low), offset)
        pts = list(zip(x, ys(high))) + list(reversed(list(zip(x, ys(low)))))
        parts.append(f'<polygon class="band" fill="{COLORS["band"]}" opacity="0.5" points="'
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
    for label, color, y in levels:
        yy = ys([y])[0]
        parts.append(f'<line x1="{PAD}" y1="{yy:.1f}" x2="{W - 8}" y2="{yy:.1f}" stroke="{color}" stroke-dasharray="4 3">'
                     f'<title>{escape(label)}</title></line>')
    for label, color, v, offset in lines:
        coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs(len(v), offset), ys(v)))
        parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="1.3" points="{coords}">'
                     f'<title>{escape(label)}</title></polyline>')
    legend = [(label, color) for label, color, _, _ in lines] + [(label, color) for label, color, _ in levels]
    for i, (label, color) in enumerate(legend):
        parts.append(f'<text x="{PAD + i * 110}" y="{H - 10}" font-size="10" fill="{color}">{escape(label)}</text>')
    return "".join(parts) + "</svg>"


def bar_chart(title: str, bars: Sequence[tuple[str, list[tuple[str, float]]]], *, unit: str) -> str:
    """Horizontal grouped bars: (label, [(series colour key, value)])."""
    row = 16
    height = 24 + row * sum(len(v) for _, v in bars) + 6 * len(bars)
    hi = max((x for _, v in bars for _, x in v), default=1.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="4" y="12" font-size="11">{escape(title)}</text>']
    y = 20
    for label, values in bars:
        parts.append(f'<text x="4" y="{y + 11}" font-size="10">{escape(label)}</text>')
        for key, value in values:
            width = value / hi * (W - 290)
            parts.append(f'<rect class="bar" x="150" y="{y}" width="{width:.1f}" height="{row - 3}" fill="{COLORS[key]}">'
                         f'<title>{escape(key)} {value:.3g} {escape(unit)}</title></rect>'
                         f'<text x="{154 + width:.1f}" y="{y + 11}" font-size="9">{value:.3g} {escape(unit)} ({escape(key)})</text>')
            y += row
        y += 6
    return "".join(parts) + "</svg>"


def node_plan_svg(r: RegionReport) -> str:
    bars = [("cluster today", [("usage", float(r.current.nodes))])]
    for plan in (r.today, r.recommended):
        if plan.best:
            bars.append((f"{plan.scenario}: {plan.best.instance_type}",
                         [("request" if plan.scenario == "today" else "recommended", float(plan.best.nodes)),
                          ("bound", float(plan.best.lower_bound))]))
    return bar_chart(f"{r.region}: nodes (cluster, plans, lower bounds)", bars, unit="nodes")


def cost_svg(r: RegionReport) -> str:
    usage = {a.name: a.monthly_usd for a in r.by_usage.by_team}
    bars = [(a.name, [("requests", a.monthly_usd), ("usage", usage.get(a.name, 0.0))]) for a in r.by_requests.by_team]
    return bar_chart(f"{r.region}: cost per team, USD/month (idle shared)", bars, unit="USD")


def forecast_svg(region: str, f: SeriesForecast) -> str:
    """Drawn at a 3-hour resolution (every third hour) so the page stays small."""
    scale, unit = (1.0, "cores") if f.resource == "cpu" else (1 / 2**30, "GiB")
    history = [x * scale for x in f.history[::PLOT_EVERY_HOURS]]
    forecast = [x * scale for x in f.forecast[::PLOT_EVERY_HOURS]]
    band = f.band[::PLOT_EVERY_HOURS]
    low = [max(0.0, x - b * scale) for x, b in zip(forecast, band)]
    high = [x + b * scale for x, b in zip(forecast, band)]
    mape = f"MAPE {f.mape_percent:.1f} %" if f.mape_percent is not None else "no back-test"
    return line_chart(f"{region} {f.name} {f.resource}: history, forecast, band ({mape})",
                      [("usage", COLORS["usage"], history, 0), ("forecast", COLORS["forecast"], forecast, len(history))],
                      unit=unit, band=(len(history), low, high))


def service_svg(w: WorkloadRecommendation) -> str:
    (cpu, memory), (rcpu, rmemory) = w.pod_requests(recommended=False), w.pod_requests(recommended=True)
    cpu_chart = line_chart(f"{w.key} CPU per pod (6 h maxima)", [("usage", COLORS["usage"], w.profile.cpu_cores, 0)],
                           unit="cores", levels=[("request", COLORS["request"], cpu), ("recommended", COLORS["recommended"], rcpu)])
    memory_chart = line_chart(f"{w.key} memory per pod (6 h maxima)", [("usage", COLORS["usage"], w.profile.memory_mib, 0)],
                              unit="MiB", levels=[("request", COLORS["request"], memory / MIB),
                                                  ("recommended", COLORS["recommended"], rmemory / MIB)])
    return f'<div class="service">{cpu_chart}{memory_chart}</div>'


STYLE = ("body{font-family:sans-serif;margin:16px;color:#222}table{border-collapse:collapse;font-size:12px}"
         "td,th{border:1px solid #ccc;padding:2px 6px}.plots{display:flex;flex-wrap:wrap;gap:8px}"
         ".service{display:flex;gap:8px}svg{background:#fafafa;border:1px solid #eee}")


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def details_html(r: RegionReport, capacity: RegionCapacity) -> str:
    """Utilisation per node of the best recommended plan, cost per namespace, services growing most."""
    best = r.recommended.best
    use = ("<p>Best recommended plan, per node (CPU % / memory % / pods): "
           + escape(", ".join(f"{u.cpu_percent:.0f}/{u.memory_percent:.0f}/{u.pods}" for u in best.utilisation)) + "</p>"
           if best else "")
    usage = {a.name: a.monthly_usd for a in r.by_usage.by_namespace}
    namespaces = [(a.name, f"${a.monthly_usd:,.2f}", f"${a.idle_hourly_usd * 730:,.2f}", f"${usage.get(a.name, 0.0):,.2f}")
                  for a in r.by_requests.by_namespace]
    growing = sorted((f for f in capacity.service_forecasts if f.resource == "cpu" and f.peak_now > 0),
                     key=lambda f: f.peak_forecast / f.peak_now, reverse=True)[:TOP_GROWTH]
    services = [(f.workload, f"{f.peak_now:.3f}", f"{f.peak_forecast:.3f}", f"x{f.peak_forecast / f.peak_now:.2f}",
                 "-" if f.mape_percent is None else f"{f.mape_percent:.1f} %") for f in growing]
    return (use + "<h3>Cost per namespace (USD/month)</h3>"
            + _table(namespaces, ["namespace", "by requests", "idle share", "by usage"])
            + "<h3>Services growing most (CPU cores, weekly peak)</h3>"
            + _table(services, ["workload", "peak now", "peak forecast", "growth", "back-test MAPE"]))


def region_html(r: RegionReport, capacity: RegionCapacity) -> str:
    plans = [(plan.scenario, p.instance_type, p.algorithm.value, str(p.nodes), str(p.lower_bound), f"{p.gap_percent:.1f} %",
              "-" if p.hourly_cost_usd is None else f"${p.hourly_cost_usd * 730:,.0f}") for plan in (r.today, r.recommended)
             for p in plan.plans if p.feasible]
    forecasts = "".join(forecast_svg(r.region, f) for f in capacity.namespace_forecasts if f.resource == "cpu")
    top = sorted((w for w in capacity.workloads if any(w.profile.cpu_cores)), key=change, reverse=True)[:PLOTTED_WORKLOADS]
    recs = [(w.key, c.container, f"{cores(c.current.requests.cpu_cores)} / {mib(c.current.requests.memory_bytes)}",
             f"{cores(c.cpu_request)} / {mib(c.memory_request)}", c.cpu_status.value, c.memory_status.value,
             f"p95 {cores(c.evidence.cpu_percentiles.get('p95'))}, max {mib(c.evidence.memory_max_bytes)},"
             f" {c.evidence.cpu_points} pts, {c.evidence.history_hours:.0f} h", c.info) for w in capacity.workloads
            for c in w.containers]
    return (f"<h2>{escape(r.region)}</h2><div class='plots'>{node_plan_svg(r)}{cost_svg(r)}</div>"
            + _table(plans, ["requests", "instance type", "algorithm", "nodes", "lower bound", "gap", "per month"])
            + details_html(r, capacity)
            + f"<h3>Forecasts</h3><div class='plots'>{forecasts}</div>"
            + f"<h3>Usage vs requests vs recommendation</h3><div class='plots'>{''.join(service_svg(w) for w in top)}</div>"
            + "<h3>Every recommendation</h3>"
            + _table(recs, ["workload", "container", "today cpu/mem", "recommended", "cpu", "memory", "evidence", "info"]))


def html(report: CapacityReport, regions: Sequence[RegionCapacity]) -> str:
    flags = "".join(f"<li>{escape(f.kind)} {escape(f.region)} {escape(f.subject)}: {escape(f.detail)}</li>" for f in report.flags)
    summary = escape(report.markdown.split("\n\n")[1] if "\n\n" in report.markdown else "")
    body = "".join(region_html(r, c) for r, c in zip(report.regions, regions))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Capacity report</title><style>{STYLE}</style>"
            f"</head><body><h1>Capacity report ({escape(report.strategy)})</h1><p>{summary}</p>"
            f"<ul class='flags'>{flags}</ul>{body}</body></html>")
