"""The design-review report: one self-contained HTML file (inline CSS and SVG; no scripts, fonts or CDNs).

It opens on an air-gapped machine. Per candidate it shows the verdict and the rules broken, the
architecture with what was inferred or defaulted from a config.json, a per-layer chart (ratio
top1/median over training with its band, and peak |a| per layer with its interval, against the
precision limits), the precision-risk matrix (format x layer, probability per cell), ranked
mitigations with their effect and citations, and applicability warnings. The predictor's version
and held-out scores are shown next to the baseline's. With two or more candidates the report
says, against the first, what changes in risk and why; two are laid out side by side.

``render_report(candidates, answer)`` takes ``review.verdict`` candidates (already forecast) and
their ``ReviewAnswer``; ``report_for(engine, arch)`` is the one-architecture form (``POST /report``).
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from predictor import precision as prec
from predictor.precision import FORMATS, TARGET_FORMATS
from predictor.response import Mitigation, PredictResponse
from predictor.schemas import Interval
from predictor.text import ranges
from review.inputs import Candidate
from review.verdict import (
    MASSIVE_ABS,
    Policy,
    ReviewAnswer,
    format_probability,
    layer_format_probabilities,
    massive_probabilities,
    review,
    value,
)

if TYPE_CHECKING:  # the type only: importing the loader imports MLflow (seconds), which presenting needs not
    from registry.loader import RegisteredPredictor

# the limits drawn, from the one formats table (predictor.precision)
RATIO_LIMITS = ((prec.INT8_STEP_RATIO, "INT8 step (127)", "#d62728"), (prec.BF16_SWAMP_RATIO, "BF16 swamping (256)", "#ff7f0e"),
                (prec.FP16_SWAMP_RATIO, "FP16 swamping (2048)", "#9467bd"))
ABS_LIMITS = ((MASSIVE_ABS, "massive (100)", "#7f7f7f"), (prec.FP8_E4M3_MAX, "FP8 E4M3 max (448)", "#d62728"),
              (prec.FP8_E5M2_MAX, "FP8 E5M2 max (57344)", "#ff7f0e"), (prec.FP16_MAX, "FP16 max (65504)", "#9467bd"))
VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
STATUS_COLOR = {"fail": "#c62828", "warn": "#b26a00", "info": "#1565c0", "pass": "#2e7d32", "skipped": "#777"}

CSS = """
:root { --fg:#1d2330; --muted:#5d6675; --line:#d9dee6; --bg:#fff; --soft:#f5f7fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; padding: 20px 28px 60px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 26px 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; } .muted { color: var(--muted); }
table { border-collapse: collapse; margin: 4px 0 10px; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600;
         font-size: 12px; letter-spacing: .03em; }
.candidates { display: grid; gap: 28px; grid-template-columns: 1fr; }
.candidates.side-by-side { grid-template-columns: 1fr 1fr; }
.candidate { border: 1px solid var(--line); border-radius: 8px; padding: 4px 16px 14px; min-width: 0; }
.scroll { overflow-x: auto; max-width: 100%; }
figure.chart { margin: 6px 0; } figure.chart svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
table.risk-matrix td.cell { min-width: 22px; padding: 2px 3px; text-align: center; font-size: 11px; }
table.risk-matrix th.layer { font-size: 11px; padding: 2px 3px; text-align: center; font-weight: 500; }
table.risk-matrix tr.target th { text-decoration: underline; }
ol.mitigations { padding-left: 22px; } ol.mitigations > li { margin: 0 0 10px; }
.level { font-size: 12px; font-weight: 600; text-transform: uppercase; }
.level.strong { color: #2e7d32; } .level.moderate { color: #00838f; } .level.not_recommended { color: #c62828; }
.level.situational, .level.informational { color: var(--muted); }
.effect td, .effect th { font-size: 12px; } ul.citations { margin: 2px 0; font-size: 12px; }
tr.inferred td:first-child::after { content: " inferred"; color: #b26a00; font-size: 11px; }
tr.defaulted td:first-child::after { content: " defaulted"; color: #5d6675; font-size: 11px; }
.up { color: #c62828; } .down { color: #2e7d32; }
"""


def e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
            return f"{x:.{digits - 1}e}"
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}g}"
    return str(x)


def _color(t: float) -> str:
    t = min(max(t, 0.0), 1.0) * (len(VIRIDIS) - 1)
    i = min(int(t), len(VIRIDIS) - 2)
    f = t - i
    r, g, b = (round(a + (b - a) * f) for a, b in zip(VIRIDIS[i], VIRIDIS[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _heat(p: float) -> str:
    """Cell colour for a probability: white-ish below 0.05, then yellow -> red."""
    if p < 0.05:
        return "#f4f6f8"
    stops = ((255, 241, 168), (253, 174, 97), (215, 48, 39))
    t = min(max((p - 0.05) / 0.95, 0.0), 1.0) * 2
    i = min(int(t), 1)
    f = t - i
    r, g, b = (round(a + (b - a) * f) for a, b in zip(stops[i], stops[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


class _Log:
    def __init__(self, lo: float, hi: float, p0: float, p1: float):
        lo = max(lo, 1e-12)
        hi = max(hi, lo * 10)
        self.lo, self.hi = math.log10(lo), math.log10(hi)
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        v = math.log10(max(v, 10**self.lo))
        return self.p0 + (self.p1 - self.p0) * (v - self.lo) / (self.hi - self.lo)

    def decades(self) -> list[float]:
        return [10.0**k for k in range(math.ceil(self.lo), math.floor(self.hi) + 1)]


def _dec_label(v: float) -> str:
    k = round(math.log10(v))
    return f"{v:g}" if -2 <= k <= 4 else f"1e{k}"


def _finite(xs) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(float(x)) and float(x) > 0]


def ratio_chart(answer: PredictResponse, width: int = 640, height: int = 300) -> str:
    """SVG: predicted ratio top1/median per layer over training (log-log) with interval bands."""
    layers = list(answer.layers or [])
    n = max(len(layers), 1)
    ml, mr, mt, mb = 56, 150, 24, 40
    steps = _finite(max(p.step, 1.0) for lf in layers for p in lf.ratio_trajectory or [])
    vals = _finite(getattr(p, k) for lf in layers for p in lf.ratio_trajectory for k in ("value", "lo", "hi"))
    x = _Log(min(steps, default=1.0), max(steps, default=1e5), ml, width - mr)
    ylo, yhi = min(vals, default=1.0), max(vals, default=1e3)
    y = _Log(max(ylo * 0.8, 0.1), max(yhi * 1.25, 300.0), height - mb, mt)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-ratio" role="img" viewBox="0 0 {width} {height}" '
           f'aria-label="predicted ratio per layer over training">']
    out += _axes(x, y, width, height, ml, mr, mt, mb, "training step", "ratio top1 / median |h|")
    for lf in layers:
        pts = [(max(p.step, 1.0), p.value, p.lo, p.hi)
               for p in lf.ratio_trajectory or []]
        pts = [p for p in pts if p[1] is not None and p[1] > 0]
        if not pts:
            continue
        layer = int(lf.layer)
        c = _color(layer / max(n - 1, 1))
        p_m = lf.p_massive if lf.p_massive is not None else float(lf.massive)
        upper = " ".join(f"{x(s):.1f},{y(h if h and h > 0 else v):.1f}" for s, v, lo, h in pts)
        lower = " ".join(f"{x(s):.1f},{y(lo if lo and lo > 0 else v):.1f}" for s, v, lo, h in reversed(pts))
        out.append(f'<polygon class="band" points="{upper} {lower}" fill="{c}" fill-opacity="{0.16 if p_m >= 0.5 else 0.05}" stroke="none"/>')
        line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v, _, _ in pts)
        end = lf.ratio_end
        tip = (f"layer {layer}: ratio at end {fmt(value(end))} [{fmt(end.lo if end else None)}, {fmt(end.hi if end else None)}], "
               f"{lf.trajectory_class}, p_massive {p_m:.2f}"
               + ("; class " + ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in lf.class_probabilities.items())
                  if getattr(lf, "class_probabilities", None) else ""))
        out.append(f'<polyline class="layer-line" data-layer="{layer}" points="{line}" fill="none" stroke="{c}" '
                   f'stroke-width="{2.0 if p_m >= 0.5 else 1.1}"><title>{e(tip)}</title></polyline>')
    out += _limits(RATIO_LIMITS, y, ml, width - mr)
    # depth colour key, bottom right (limit labels sit higher up)
    kx, ky = width - mr + 6, height - mb - 40
    out.append(f'<text x="{kx}" y="{ky + 8}" font-size="10" fill="#333">layer depth</text>')
    for i in range(10):
        out.append(f'<rect x="{kx + i * 12}" y="{ky + 13}" width="12" height="8" fill="{_color(i / 9)}"/>')
    out.append(f'<text x="{kx}" y="{ky + 32}" font-size="9" fill="#555">0</text>')
    out.append(f'<text x="{kx + 118}" y="{ky + 32}" font-size="9" fill="#555" text-anchor="end">{n - 1}</text>')
    out.append("</svg>")
    return "".join(out)


def peak_chart(answer: PredictResponse, width: int = 640, height: int = 240) -> str:
    """SVG: predicted peak |a| per layer with its interval, against the format maxima."""
    layers = list(answer.layers or [])
    ml, mr, mt, mb = 56, 150, 16, 40
    vals = _finite(getattr(lf.peak_abs, k) for lf in layers for k in ("value", "lo", "hi"))
    y = _Log(max(min(vals, default=1.0) * 0.8, 0.1), max(max(vals, default=1e3) * 1.25, 200.0), height - mb, mt)
    n = max(len(layers), 1)
    step = (width - ml - mr) / n

    def xl(i: float) -> float:
        return ml + step * (i + 0.5)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-peak" role="img" viewBox="0 0 {width} {height}" '
           f'aria-label="predicted peak |a| per layer">']
    out += _axes(None, y, width, height, ml, mr, mt, mb, "layer", "peak |a|")
    for i in range(0, n, max(1, n // 12)):
        out.append(f'<text x="{xl(i):.1f}" y="{height - mb + 14}" font-size="10" text-anchor="middle" fill="#555">{i}</text>')
    out += _limits(ABS_LIMITS, y, ml, width - mr)
    for i, lf in enumerate(layers):
        pk = lf.peak_abs
        v, lo, hi = pk.value, pk.lo, pk.hi
        if v is None or v <= 0:
            continue
        p_m = lf.p_massive if lf.p_massive is not None else float(lf.massive)
        c = "#c62828" if p_m >= 0.5 else "#1f77b4"
        xx = xl(i)
        if lo and hi:
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y(max(lo, 1e-12)):.1f}" y2="{y(hi):.1f}" stroke="#9aa3ae" stroke-width="1.2"/>')
        tip = f"layer {lf.layer}: peak |a| {fmt(v)} [{fmt(lo)}, {fmt(hi)}], p_massive {p_m:.2f}"
        out.append(f'<circle class="peak" cx="{xx:.1f}" cy="{y(v):.1f}" r="3.4" fill="{c}"><title>{e(tip)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _limits(limits, y: _Log, x0: float, x1: float) -> list[str]:
    """Dashed lines at the limits inside the y range, labels to the right pushed apart so none overlap."""
    shown = sorted(((y(v), label, c) for v, label, c in limits if 10**y.lo <= v <= 10**y.hi), reverse=True)
    out, last = [], math.inf
    for yy, label, c in shown:  # bottom to top
        ty = min(yy + 4, last - 11)
        last = ty
        out.append(f'<line class="limit" x1="{x0}" x2="{x1}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{c}" stroke-dasharray="5 4" stroke-width="1"/>')
        out.append(f'<text x="{x1 + 4}" y="{ty:.1f}" font-size="10" fill="{c}">{e(label)}</text>')
    return out


def _axes(x: _Log | None, y: _Log, width, height, ml, mr, mt, mb, xlabel: str, ylabel: str) -> list[str]:
    out = [f'<rect x="{ml}" y="{mt}" width="{width - ml - mr}" height="{height - mt - mb}" fill="#fbfcfd" stroke="#c9d0d9"/>']
    for v in y.decades():
        yy = y(v)
        out.append(f'<line x1="{ml}" x2="{width - mr}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e6e9ee"/>')
        out.append(f'<text x="{ml - 5}" y="{yy + 3.5:.1f}" font-size="10" text-anchor="end" fill="#555">{_dec_label(v)}</text>')
    if x is not None:
        for v in x.decades():
            xx = x(v)
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt}" y2="{height - mb}" stroke="#e6e9ee"/>')
            out.append(f'<text x="{xx:.1f}" y="{height - mb + 14}" font-size="10" text-anchor="middle" fill="#555">{_dec_label(v)}</text>')
    out.append(f'<text x="{(ml + width - mr) / 2:.0f}" y="{height - 6}" font-size="11" text-anchor="middle" fill="#333">{e(xlabel)}</text>')
    out.append(f'<text x="14" y="{(mt + height - mb) / 2:.0f}" font-size="11" text-anchor="middle" fill="#333" '
               f'transform="rotate(-90 14 {(mt + height - mb) / 2:.0f})">{e(ylabel)}</text>')
    return out


# ------------------------------------------------------------------------------------ sections


def risk_matrix(answer: PredictResponse, precision_target: str | None) -> str:
    layers = [int(lf.layer) for lf in answer.layers or []]
    targets = {r.format for r in answer.precision or [] if r.target} or set(
        TARGET_FORMATS.get(precision_target or "", ()))
    head = "".join(f'<th class="layer">{i}</th>' for i in layers)
    rows = [f'<tr><th>format \\ layer</th>{head}<th>P(any)</th><th>at risk</th></tr>']
    massive = massive_probabilities(answer)
    cells = "".join(f'<td class="cell" style="background:{_heat(massive.get(i, 0))}" '
                    f'title="layer {i}: P(massive) {massive.get(i, 0):.2f}">{_pcell(massive.get(i, 0))}</td>' for i in layers)
    pm = max(massive.values(), default=0.0)
    rows.append(f'<tr class="massive"><th>massive (|a|&gt;100, &gt;1000x median)</th>{cells}<td class="num">{pm:.2f}</td>'
                f'<td>{ranges([i for i, p in massive.items() if p >= 0.5]) or "-"}</td></tr>')
    for r in answer.precision or []:
        f = r.format
        per = layer_format_probabilities(r)
        details: dict[int, list[str]] = {}
        for d in r.details or []:
            details.setdefault(int(d.layer), []).append(
                f"{d.check}: {d.certainty}, predicted {fmt(d.predicted)} "
                f"(hi {fmt(d.predicted_hi)}) vs limit {fmt(d.limit)}, P {d.probability:.2f}"
                + (f" from step {fmt(d.from_step)}" if d.from_step is not None else ""))
        tips = {i: f"{f} layer {i}: P {per.get(i, 0.0):.2f}; " + "; ".join(details.get(i, ["below the limit within the interval"]))
                for i in layers}
        cells = "".join(
            f'<td class="cell" style="background:{_heat(per.get(i, 0.0))}" title="{e(tips[i])}">{_pcell(per.get(i, 0.0))}</td>'
            for i in layers)
        p = format_probability(r)
        cls = ' class="target"' if f in targets else ""
        at = "likely" if r.at_risk else ("possible" if r.possible_layers else "no")
        rows.append(f'<tr{cls} data-format="{e(f)}"><th title="{e(r.why)}">{e(f)}{" (target)" if f in targets else ""}</th>'
                    f'{cells}<td class="num">{p:.2f}</td><td>{at}</td></tr>')
    return (f'<div class="scroll"><table class="risk-matrix" data-testid="risk-matrix">{"".join(rows)}</table></div>'
            '<p class="muted">Cells: probability that the layer crosses the format\'s limits during planned training '
            '(blank: below 0.05). Hover a cell for the check, the forecast and the limit.</p>')


def _pcell(p: float) -> str:
    if p < 0.05:
        return ""
    return "1" if p >= 0.995 else f"{p:.2f}".lstrip("0")


def _effect_rows(m: Mitigation) -> tuple[str, list[tuple[str, str, str]]]:
    """('predicted' | 'evidence', [(quantity, before, after or text)]) for a mitigation: its what-if effect
    (largest peak |a|, largest end ratio, risk per target format) when it maps onto the architecture."""
    eff = m.effect
    if eff is None:
        return "evidence", [(str(k), "", str(v)) for k, v in (m.expected_effect or {}).items()]
    rows = [("largest peak |a|", _val(eff.peak_abs_before), _val(eff.peak_abs_after)),
            ("largest ratio at end", _val(eff.ratio_end_before), _val(eff.ratio_end_after))]
    rows += [(f"P({f} limits crossed)", f"{eff.risk_before[f]:.2f}", f"{eff.risk_after.get(f, 0.0):.2f}")
             for f in sorted(eff.risk_before)]
    r = eff.peak_abs_ratio
    studies = ", ".join(f"{x.split('_')[0]} {x.split('(')[-1].rstrip(')')}" for x in eff.studies)
    said = f"x{r.value:.2g} [{r.lo:.2g}, {r.hi:.2g}]" if r is not None else "no effect claimed"
    rows.append(("the change itself: after/before of the largest peak |a| (its own 90 %)", "x1 (this design)",
                 f"{said}; {eff.evidence} evidence" + (f": {studies}" if studies else "")
                 + ("; controlled and associational evidence disagree" if eff.disagreement else "")))
    return "predicted", rows


def _val(iv: Interval) -> str:
    return f"{fmt(iv.value)} [{fmt(iv.lo)}, {fmt(iv.hi)}]"


def precision_plan(answer: PredictResponse) -> str:
    """The answer's plan per target format: layers kept in high precision (and why), monitored, risk left;
    ``maforecast plan CONFIG --tool ...`` writes it for torchao, llm-compressor, Megatron-LM, TE debug or JSON."""
    plan = answer.precision_plan
    if plan is None or not plan.formats:
        return '<p class="muted">No format to plan for.</p>'
    rows = "".join(
        f'<tr data-format="{e(f.format)}"><td>{e(f.format)}</td><td>{e(ranges([p.layer for p in f.keep_high_precision]) or "none")}</td>'
        f"<td>{e(ranges(f.monitor) or 'none')}</td><td>{f.residual_risk:.2f}</td><td>{e(f.why)}</td></tr>"
        for f in plan.formats)
    recipes = "".join(
        f'<tr data-recipe="{e(o.format)}"><td>{e(o.format)}{" &#10003;" if o.format == plan.recipe else ""}</td>'
        f"<td>{e(o.label)}</td><td>{'at risk' if o.at_risk else 'passes'} (P {o.probability:.2f})</td><td>{o.keep}</td>"
        f"<td>{e('; '.join(f'{k}: {v}' for k, v in o.tools.items()))}</td></tr>" for o in plan.recipes)
    chosen = (f'<p>Recipe: <b>{e(plan.recipe)}</b>: {e(plan.recipe_why or "")}</p><table class="plan"><tr><th>recipe</th>'
              f"<th>scaling</th><th>gate</th><th>layers kept</th><th>in each tool</th></tr>{recipes}</table>"
              if plan.recipes else "")
    return (chosen + '<table class="plan"><tr><th>format</th><th>keep in high precision</th><th>monitor</th>'
            f"<th>P(a layer outside crosses)</th><th>why</th></tr>{rows}</table>"
            '<p class="muted">Files for the tools: <code>maforecast plan CONFIG --tool torchao|te|megatron|llm-compressor|'
            "te-debug|json</code> (docs/PLAN.md).</p>")


def mitigations(answer: PredictResponse, limit: int = 12) -> str:
    items = []
    for m in list(answer.mitigations or [])[:limit]:
        level = str(m.level or "")
        kind, rows = _effect_rows(m)
        if rows:
            if kind == "predicted":
                body = "".join(f"<tr><td>{e(q)}</td><td>{e(b)}</td><td>{e(a)}</td></tr>" for q, b, a in rows)
                eff = (f'<table class="effect" data-kind="predicted"><tr><th>predicted effect</th><th>before</th><th>after</th></tr>'
                       f"{body}</table>")
            else:
                body = "".join(f"<tr><td>{e(q)}</td><td>{e(a)}</td></tr>" for q, _, a in rows)
                eff = f'<table class="effect" data-kind="evidence"><tr><th>expected effect</th><th>evidence</th></tr>{body}</table>'
        else:
            eff = ""
        cites = "".join(
            f'<li><a href="{e(c.url or "https://arxiv.org/abs/" + str(c.arxiv))}">arXiv:{e(c.arxiv)}</a> '
            f'{e(c.title)} <span class="muted">({e(c.confidence)} confidence; {e(c.result)})</span></li>'
            for c in m.citations or [])
        layers = ranges(m.motivating_layers or [])
        items.append(
            f'<li class="mitigation" data-id="{e(m.id)}"><span class="level {e(level)}">{e(level.replace("_", " "))}</span> '
            f'<b>{e(m.name)}</b> <span class="muted">({e(m.category)}; cost: {e(m.cost)})</span>'
            f'<div>{e(m.why)}. {e(m.motivation)}{f" (layers {e(layers)})" if layers else ""}</div>'
            f'{eff}<ul class="citations">{cites}</ul></li>')
    more = len(answer.mitigations or []) - limit
    tail = f'<p class="muted">{more} more in the JSON answer.</p>' if more > 0 else ""
    return f'<ol class="mitigations" data-testid="mitigations">{"".join(items)}</ol>{tail}' if items else "<p>none</p>"


def applicability(answer: PredictResponse) -> str:
    warns = list(answer.applicability or [])
    if not warns:
        return '<p class="applicability ok">Within the predictor\'s evidence: no input outside its training range.</p>'
    lis = "".join(f"<li><b>{e(w.field)}</b> = {e(w.value)}: {e(w.message)}</li>" for w in warns)
    return f'<ul class="applicability">{lis}</ul>'


def _note_field(note: str) -> tuple[str, str]:
    field = note.split(":", 1)[0].strip()
    kind = "inferred" if "inferred" in note else "defaulted"
    return field, kind


def architecture_table(cand: Candidate) -> str:
    """What was inferred or defaulted (from a config.json) up front; every field in a collapsed table."""
    notes: dict[str, tuple[str, str]] = {}
    for note in cand.inferred:
        f, kind = _note_field(note)
        notes[f] = (kind, note)
    data = cand.arch.model_dump()

    def row(k: str) -> str:
        v = data[k]
        kind, note = notes.get(k, ("", ""))
        cls = f' class="{kind}"' if kind else ""
        return (f'<tr{cls}><td>{e(k)}</td><td>{e(v if isinstance(v, str) else fmt(v))}</td>'
                f'<td class="muted">{e(note)}</td></tr>')

    head = "<tr><th>field</th><th>value</th><th>inferred / defaulted</th></tr>"
    marked = [k for k in data if k in notes]
    extra = [note for note in cand.inferred if _note_field(note)[0] not in data]
    shape = ", ".join(f"{k} {fmt(data[k])}" for k in ("n_layers", "d_model", "n_heads", "d_ffn") if k in data)
    top = (f'<table class="architecture inferred-fields">{head}{"".join(row(k) for k in marked)}</table>' if marked
           else "<p>Nothing inferred or defaulted: every field was given.</p>")
    tail = f'<ul>{"".join(f"<li>{e(n)}</li>" for n in extra)}</ul>' if extra else ""
    return (f'<p class="muted">From {e(cand.source)} ({e(cand.kind)}): {e(shape)}; {len(marked)} field(s) inferred or defaulted.</p>'
            f'<div class="scroll">{top}</div>{tail}'
            f'<details><summary>all {len(data)} fields</summary><div class="scroll">'
            f'<table class="architecture">{head}{"".join(row(k) for k in data)}</table></div></details>')


def candidate_section(cand: Candidate, i: int) -> str:
    v, a = cand.verdict, cand.answer
    s = a.summary
    rules = "".join(
        f'<tr class="rule {r.status}"><td>{e(r.id)}</td><td><span class="badge" style="background:{STATUS_COLOR[r.status]}">'
        f'{r.status}</span></td><td>{e(r.message)}</td><td class="muted">{e(r.source or "")}</td></tr>' for r in v.results)
    emerg = s.earliest_emergence_step
    return f"""
<article class="candidate" id="candidate-{i}" data-name="{e(cand.name)}">
<h2>{e(cand.name)} <span class="badge" style="background:{STATUS_COLOR[v.status]}">{v.status.upper()}</span></h2>
<p><b>{e(v.architecture)}</b>, precision target <b>{e(v.precision_target)}</b>, risk {v.risk:.2f}.
Massive layers: {e(ranges(s.massive_layers or []) or "none")}; largest peak |a| {fmt(s.largest_peak_abs.value)}
(layer {e(s.largest_peak_layer)}); earliest emergence step {fmt(value(emerg))}
[{fmt(emerg.lo if emerg else None)}, {fmt(emerg.hi if emerg else None)}].</p>
<h3>Policy rules</h3>
<table class="rules"><tr><th>rule</th><th>result</th><th>why</th><th>probability from</th></tr>{rules}</table>
<h3>Architecture</h3>
{architecture_table(cand)}
<h3>Forecast per layer</h3>
<figure class="chart" data-testid="chart">{ratio_chart(a)}{peak_chart(a)}
<figcaption>Top: predicted ratio top1/median |h| per layer over planned training (line: point forecast; band: interval),
with the INT8, BF16 and FP16 ratio limits. Bottom: predicted peak |a| per layer with its interval (red: forecast massive),
with the FP8 and FP16 maxima. Hover for values.</figcaption></figure>
<h3>Precision risk (format x layer)</h3>
{risk_matrix(a, v.precision_target)}
<h3>Precision plan</h3>
{precision_plan(a)}
<h3>Mitigations (ranked)</h3>
{mitigations(a)}
<h3>Applicability</h3>
{applicability(a)}
</article>"""


def _arrow(a: float | None, b: float | None, digits: int = 2, ratio: bool = False) -> str:
    if a is None or b is None:
        return f"{fmt(a)} &rarr; {fmt(b)}"
    cls = "up" if b > a else "down" if b < a else ""
    txt = f"{a:.{digits}f} &rarr; {b:.{digits}f}" if not ratio else f"{fmt(a)} &rarr; {fmt(b)}"
    if ratio and a > 0 and b > 0 and abs(b / a - 1) > 1e-6:
        txt += f" (x{b / a:.3g})"
    return f'<span class="{cls}">{txt}</span>' if cls else txt


def comparison(base: Candidate, other: Candidate) -> str:
    da, db = base.arch.model_dump(exclude={"name"}), other.arch.model_dump(exclude={"name"})
    changed = {k: (da[k], db[k]) for k in da if da[k] != db[k]}
    ch_rows = "".join(f"<tr><td>{e(k)}</td><td>{e(fmt(a))}</td><td>{e(fmt(b))}</td></tr>" for k, (a, b) in changed.items())
    pa = {r.format: r for r in base.answer.precision or []}
    pb = {r.format: r for r in other.answer.precision or []}
    rows = []
    for f in FORMATS:
        if f not in pa or f not in pb:
            continue
        a, b = format_probability(pa[f]), format_probability(pb[f])
        la, lb = len(pa[f].layers), len(pb[f].layers)
        rows.append(f"<tr><td>{e(f)}</td><td>{_arrow(a, b)}</td><td>{la} &rarr; {lb}</td></tr>")
    sa, sb = base.answer.summary, other.answer.summary
    ma, mb = sa.massive_layers or [], sb.massive_layers or []
    rows.append(f"<tr><td>massive layers</td><td>{len(ma)} &rarr; {len(mb)}</td><td></td></tr>")
    rows.append(f"<tr><td>largest peak |a|</td><td>{_arrow(sa.largest_peak_abs.value, sb.largest_peak_abs.value, ratio=True)}</td><td></td></tr>")
    rows.append(f"<tr><td>largest ratio at end</td><td>{_arrow(sa.largest_ratio_end.value, sb.largest_ratio_end.value, ratio=True)}</td><td></td></tr>")
    rows.append(f"<tr><td>earliest emergence step</td><td>{_arrow(value(sa.earliest_emergence_step), value(sb.earliest_emergence_step), ratio=True)}</td><td></td></tr>")
    va, vb = base.verdict, other.verdict
    why = []
    if changed:
        why.append("inputs changed (each candidate's own forecast below: a prediction, not the change's effect): " + ", ".join(f"{k} {fmt(a)} &rarr; {fmt(b)}" for k, (a, b) in changed.items()))
    else:
        why.append("identical inputs")
    if other.difference is not None:  # the intervention, from the registered model's /compare
        why.insert(0, f"<strong>{e(other.difference.bottom_line)}</strong>")
    eff_a = {m.id: m for m in base.answer.mitigations or [] if m.effective}
    eff_b = {m.id for m in other.answer.mitigations or [] if m.effective}
    gone = [m for mid, m in eff_a.items() if mid not in eff_b]
    adopted = [m for m in gone if m.effect and all(getattr(other.arch, k, None) == v for k, v in m.effect.applied.items())]
    if adopted:
        why.append(f"{e(other.name)} adopts: " + ", ".join(e(m.name) for m in adopted))
    if rest := [m for m in gone if m not in adopted]:
        why.append(f"no longer effective for {e(other.name)} by its own forecast: " + ", ".join(e(m.name) for m in rest))
    resolved = [r for r in va.broken if r not in vb.broken]
    new = [r for r in vb.broken if r not in va.broken]
    if resolved:
        why.append("rules no longer broken: " + ", ".join(e(r) for r in resolved))
    if new:
        why.append("rules newly broken: " + ", ".join(e(r) for r in new))
    wa, wb = set(va.applicability), set(vb.applicability)
    if wb - wa:
        why.append(f"outside the evidence only in {e(other.name)}: " + ", ".join(e(x) for x in sorted(wb - wa)))
    if wa - wb:
        why.append(f"back within the evidence in {e(other.name)}: " + ", ".join(e(x) for x in sorted(wa - wb)))
    return f"""
<div class="comparison" data-base="{e(base.name)}" data-other="{e(other.name)}">
<h3>{e(other.name)} vs {e(base.name)}: verdict {va.status} &rarr; {vb.status}, risk {_arrow(va.risk, vb.risk)}</h3>
<div class="candidates side-by-side"><div>
<table><tr><th>changed input</th><th>{e(base.name)}</th><th>{e(other.name)}</th></tr>{ch_rows or '<tr><td colspan="3">none</td></tr>'}</table>
</div><div>
<table><tr><th>risk</th><th>P(limit crossed)</th><th>layers at risk</th></tr>{"".join(rows)}</table>
</div></div>
<ul class="why">{"".join(f"<li>{w}</li>" for w in why)}</ul>
</div>"""


def predictor_section(answer: ReviewAnswer) -> str:
    p = answer.predictor
    rows = "".join(
        f"<tr><td>{e(r['metric'])}</td><td class=num>{fmt(r['value'])}</td><td class=num>{fmt(r['baseline'])}</td>"
        f"<td>{_better(r)}</td></tr>" for r in p.get("scores") or [])
    table = (f'<table class="scores"><tr><th>held-out score</th><th>this predictor</th>'
             f"<th>baseline (predict the mean)</th><th></th></tr>{rows}</table>") if rows else "<p>no held-out scores recorded</p>"
    return f"""
<section id="predictor"><h2>Predictor</h2>
<p><b>{e(p.get("name"))}</b> version <b>{e(p.get("version") or "?")}</b> ({e(p.get("alias") or "pinned")}),
{e(p.get("model_uri") or "")}; training data digest {e(p.get("data_digest") or "-")}.</p>{table}</section>"""


def _better(r: dict) -> str:
    v, b = r.get("value"), r.get("baseline")
    if v is None or b is None:
        return ""
    lower_better = "mae" in r["metric"].lower()  # the metric names say "MAE" (an error: lower is better)
    good = v < b if lower_better else v > b
    return '<span class="down">better than baseline</span>' if good else '<span class="up">not better than baseline</span>'


def verdict_table(answer: ReviewAnswer) -> str:
    rows = []
    for i, v in enumerate(answer.candidates, 1):
        broken = "; ".join(f"{r.id}: {r.message}" for r in v.results if r.status in ("fail", "warn")) or "-"
        rows.append(f'<tr data-status="{v.status}"><td class=num>{i}</td><td><a href="#candidate-{i}">{e(v.name)}</a></td>'
                    f'<td><span class="badge" style="background:{STATUS_COLOR[v.status]}">{v.status.upper()}</span></td>'
                    f"<td class=num>{v.risk:.2f}</td><td>{e(v.precision_target)}</td>"
                    f"<td>{e(ranges(v.massive_layers) or 'none')}</td><td class=num>{fmt(v.largest_peak_abs)}</td>"
                    f"<td>{e(broken)}</td></tr>")
    return ('<table class="verdicts" data-testid="verdicts"><tr><th>#</th><th>candidate</th><th>verdict</th><th>risk</th>'
            "<th>target</th><th>massive layers</th><th>peak |a|</th><th>rules broken</th></tr>" + "".join(rows) + "</table>")


def render_report(candidates: Sequence[Candidate], answer: ReviewAnswer, title: str | None = None) -> str:
    """The whole report as one HTML string. ``candidates`` are in the order of ``answer`` (by risk)."""
    cands = [c for c in candidates if c.verdict is not None]
    by_input = sorted(cands, key=lambda c: getattr(c, "index", 0))
    title = title or ("Design review: " + ", ".join(c.name for c in by_input[:4]) + (" ..." if len(by_input) > 4 else ""))
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    counts = {s: sum(c.verdict.status == s for c in cands) for s in ("pass", "warn", "fail")}
    comps = ""
    if len(by_input) >= 2:
        base = by_input[0]
        comps = ('<section id="comparison"><h2>What changes in risk, and why</h2>'
                 f'<p class="muted">Each candidate against {e(base.name)} (the first given).</p>'
                 + "".join(comparison(base, o) for o in by_input[1:9]) + "</section>")
    layout = "candidates side-by-side" if len(cands) == 2 else "candidates"
    # two candidates: side by side, in input order, so the comparison reads left to right
    shown = by_input if len(cands) == 2 else cands
    order = {id(c): i for i, c in enumerate(cands, 1)}
    body = "".join(candidate_section(c, order[id(c)]) for c in shown)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="maforecast review (schema {e(answer.schema_version)})">
<title>{e(title)}</title><style>{CSS}</style></head>
<body>
<header><h1>{e(title)}</h1>
<p class="muted">Policy: {e(answer.policy)}. {len(cands)} candidate(s): {counts["pass"]} pass, {counts["warn"]} warn,
{counts["fail"]} fail. Overall <b>{answer.status.upper()}</b> (exit {answer.exit_code}). Generated {now}.</p></header>
<section id="verdicts"><h2>Verdicts (sorted by risk)</h2>{verdict_table(answer)}</section>
{predictor_section(answer)}
{comps}
<div class="{layout}">{body}</div>
</body></html>
"""


def report_for(predictor: RegisteredPredictor, arch: Any, inferred: Sequence[str] = (), policy: Policy | None = None,
               source: str = "request body", kind: str = "native") -> str:
    """Report for one architecture (``POST /report``): forecast, default policy unless given, HTML."""
    name = getattr(arch, "name", None) or arch.label()
    cand = Candidate(name=str(name), source=source, kind=kind, arch=arch, inferred=list(inferred))
    answer = review([cand], predictor, policy)
    return render_report([cand], answer)
