"""Renders a sweep comparison (``pipeline.compare``'s frames) as CSV, figures, Markdown, HTML and text.

The report is built once as a list of blocks (headings, paragraphs, tables, images) and then
written twice (``render``): as Markdown next to its PNGs, and as one self-contained HTML file
with the figures embedded as base64 PNG. Nothing here reads MLflow or imports TensorFlow.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline.compare import classes, figures, render, speed, stats, tables
from pipeline.tracking import contract, redaction

ESTIMATE = ["mean ± std", "95% CI"]
COMPARISON = ["difference", "95% CI", "test", "p", "p (Holm)", "verdict", "detectable", "seeds needed"]
BRIEF = ["difference [95% CI]", "p (Holm)", "verdict"]
METHOD = (
    "difference from the baseline by a paired t-test on the per-seed differences where two seeds or "
    "more pair (the seeds both ran), else Welch's t-test; p-values Holm-adjusted across the comparisons"
)


def write(
    out: Path, runs: pd.DataFrame, summary: pd.DataFrame, effects: pd.DataFrame, per_class=None, ratios=None
) -> list[Path]:
    """Writes summary.csv, main_effects.csv (factorial sweeps), per_class_recall.csv, speed.csv,
    the PNGs, report.md and report.html."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "summary.csv"]
    summary.to_csv(files[0], index=False)
    if len(effects):
        files.append(out / "main_effects.csv")
        effects.to_csv(files[-1], index=False)
    else:  # a stale one from an earlier, factorial sweep would mislead
        (out / "main_effects.csv").unlink(missing_ok=True)
    pngs = {
        "curves.png": figures.png(figures.curves(runs, list(summary.variant))),
        "final_metric.png": figures.png(figures.final_metric(runs, summary)),
    }
    if per_class is None:
        per_class = classes.per_class_frame(runs, list(summary.variant), summary.attrs["baseline"])
    if len(per_class):
        files.append(out / "per_class_recall.csv")
        per_class.to_csv(files[-1], index=False)
        pngs["per_class_recall.png"] = figures.png(classes.heatmap(per_class))
    if ratios is None:
        ratios = speed.ratio_frame(runs, list(summary.variant), summary.attrs["baseline"])
    if len(ratios):
        files.append(out / "speed.csv")
        ratios.to_csv(files[-1], index=False)
        pngs["accuracy_vs_speed.png"] = figures.png(speed.accuracy_vs_speed(runs, summary))
    for name, data in pngs.items():
        (out / name).write_bytes(data)
    blocks = _blocks(runs, summary, effects) + classes.blocks(per_class) + speed.blocks(ratios, summary)
    (out / "report.md").write_text(render.to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(
        render.to_html(blocks, pngs, summary.attrs["experiment"]), encoding="utf-8"
    )
    return [*files, *(out / name for name in pngs), out / "report.md", out / "report.html"]


def terminal_table(summary: pd.DataFrame) -> str:
    """The comparison with the baseline as an aligned plain-text table, with a one-line header."""
    a = summary.attrs
    head = (
        f"{a['experiment']} (sweep {a.get('sweep_id')}, parent run {a['parent_run_id']}): "
        f"final {a['metric']}, mean ± std over seeds; "
        f"{METHOD.replace('the baseline', repr(a['baseline']))}; alpha={a['alpha']}; detectable: the "
        f"smallest difference these seeds detect with {a['power']:.0%} power; seeds needed: to detect the "
        "observed difference"
    )
    _, headers, rows = _difference_table(summary)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join([head, "", *lines])


def markdown_summary(summary: pd.DataFrame, effects: pd.DataFrame, per_class=None, ratios=None) -> str:
    """A compact Markdown table naming every variant with its verdict (for the sweep's parent run
    description in MLflow), then the main effects' verdicts when the sweep is factorial, then a
    line per variant with a class decided (``classes.sentences``)."""
    a = summary.attrs
    method = METHOD.replace("the baseline", f"`{a['baseline']}`")
    head = f"**{a['experiment']}**: final `{a['metric']}`, mean over seeds; {method}, alpha {a['alpha']}."
    headers = ["variant", "seeds", "mean", *BRIEF]
    rows = [
        [r["variant"], str(r["n_seeds"]), _number(r[f"{a['metric']}_mean"]), *_brief(r)]
        for _, r in summary.iterrows()
    ]
    blocks = [("p", head), ("table", headers, rows)]
    if len(effects):
        rows = [[r["factor"], r["level"], str(r["n_runs"]), *_brief(r)] for _, r in effects.iterrows()]
        blocks += [("p", "Main effects:"), ("table", ["factor", "level", "runs", *BRIEF], rows)]
    decided = classes.sentences(per_class, decided_only=True) if per_class is not None else []
    if decided:
        blocks += [("p", "Per class (recall, Holm across classes):"), ("list", decided)]
    said = speed.sentences(ratios, summary) if ratios is not None and len(ratios) else []
    if said:
        blocks += [("p", "Speed (ratio to the baseline, geometric mean over seeds):"), ("list", said)]
    return render.to_markdown(blocks)


def _brief(row: pd.Series) -> list[str]:
    """Difference [CI], adjusted p, and the verdict with the seeds that would decide a "no
    evidence" and why the sweep stopped."""
    interval = _interval(row["difference_ci_low"], row["difference_ci_high"])
    difference = _number(row["difference"], "+.4f") + ("" if interval == "–" else f" {interval}")
    seeds = row["seeds_needed"]
    extra = [f"~{seeds:,.0f} seeds would detect it"] if 0 < seeds < math.inf else []
    extra += [row["stopped"]] if row.get("stopped") else []
    return [difference, _p(row["p_adjusted"]), row["verdict"] + (f" ({'; '.join(extra)})" if extra else "")]


def _blocks(runs: pd.DataFrame, summary: pd.DataFrame, effects: pd.DataFrame) -> list[tuple]:
    a = summary.attrs
    blocks = [
        ("h1", f"Comparison: {a['experiment']}"),
        ("p", _sweep_line(a)),
        ("list", _method(runs, summary)),
    ]
    blocks += [("h2", f"Difference from the baseline on final {a['metric']}"), _difference_table(summary)]
    blocks += [("h2", "Variants: mean ± std [95% CI] over seeds"), _variant_table(summary)]
    if len(effects):
        note = (
            "Each level's mean over all finished runs at that level (averaging over the other factors); "
            "the difference is from the factor's first level, paired by seed and the other factors' "
            "levels where the design has the pairs (else Welch), Holm-adjusted across the main effects."
        )
        blocks += [("h2", f"Main effects on final {a['metric']}"), ("p", note), _effects_table(effects)]
    failed = runs[runs.status != contract.FINISHED]
    blocks.append(("h2", f"Jobs that did not finish ({len(failed)})"))
    rows = [[r.variant, r.seed, r.status, f"`{r.run_id}`", _error(r)] for r in failed.itertuples()]
    blocks.append(
        ("table", ["variant", "seed", "status", "run id", "error"], rows) if rows else ("p", "None.")
    )
    blocks += [("h2", "Figures"), ("image", "curves.png", "Learning curves: mean over seeds, band ±1 std")]
    caption = f"Final {a['metric']}: mean and 95% CI per variant, dots are seeds"
    return [*blocks, ("image", "final_metric.png", caption)]


def _error(run) -> str:
    return run.error or ("still running" if run.status == "RUNNING" else "(no error tag)")


def _sweep_line(a: dict) -> str:
    params = ", ".join(f"`{key}={value}`" for key, value in a["sweep_params"].items()) or "(not recorded)"
    return (
        f"Sweep `{a.get('sweep_id')}` (parent run `{a['parent_run_id']}`, status {a['parent_status']}) "
        f"in MLflow `{redaction.redact(a['tracking_uri'])}`; "
        f"sweep definition {params}."
    )


def _method(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    a, done = summary.attrs, runs[runs.status == contract.FINISHED]
    direction = "lower" if stats.lower_is_better(a["metric"]) else "higher"
    seeds = ", ".join(sorted(set(done.seed), key=lambda seed: (len(seed), seed))) or "none"
    epochs = sorted({int(e) for e in done.epochs.dropna()})
    epoch_text = "-".join(str(e) for e in dict.fromkeys((epochs[0], epochs[-1]))) if epochs else "none"
    counts = ", ".join(str(n) for n in summary.n_seeds)
    return [
        f"Metric: final `{a['metric']}` (its value at the last epoch); {direction} is better.",
        f"Baseline: `{a['baseline']}`.",
        f"Test: each variant against the baseline by {METHOD.split(' by ', 1)[1]} "
        f"(tests used: {', '.join(sorted(set(summary.test) - {''})) or 'none'}); "
        f"verdicts use the adjusted p-values, alpha = {a['alpha']}.",
        f"Intervals (95%) of means: {_scales(summary)}. Of differences: {_difference_method(a['metric'])}.",
        f"Seeds: {seeds}; finished seeds per variant: {counts}; epochs: {epoch_text}; "
        f"jobs: {len(done)} finished, {len(runs) - len(done)} did not finish.",
        "With few seeds a test has little power: 'no evidence of a difference' is not evidence "
        f"of no difference. 'detectable' is the smallest true difference these seeds detect with "
        f"{a['power']:.0%} power (alpha {a['alpha']}, from the observed spread); 'seeds needed' is how "
        "many seeds per variant would detect the observed difference with that power (alpha before "
        "the correction).",
    ]


def _difference_method(metric: str) -> str:
    if stats.bound_for(metric) is None:
        return "the test's t interval"
    return f"{stats.BOUNDED}; 'detectable' is at most 1 (1: these seeds detect no possible difference)"


def _scales(summary: pd.DataFrame) -> str:
    scales = {stats.scale_for(column.removesuffix("_mean")) for column in summary if column.endswith("_mean")}
    return "; ".join(
        f"{stats.SCALES[scale]} ({'accuracies' if scale == stats.LOGIT else 'others'})"
        for scale in sorted(scales)
    )


def _difference_table(summary: pd.DataFrame) -> tuple[str, list[str], list[list[str]]]:
    metric, stopped = summary.attrs["metric"], "stopped" in summary
    headers = ["variant", "seeds", "failed", f"{metric} mean ± std", *ESTIMATE[1:], *COMPARISON]
    rows = [
        [r["variant"], str(r["n_seeds"]), str(r["n_failed"]), *_estimate(r, f"{metric}_"), *_comparison(r)]
        + ([r["stopped"] or "–"] if stopped else [])
        for _, r in summary.iterrows()
    ]
    return "table", headers + ["stopped"] * stopped, rows


def _variant_table(summary: pd.DataFrame) -> tuple[str, list[str], list[list[str]]]:
    columns = tables.SUMMARIZED
    labels = ("final val_accuracy", "best-epoch val_accuracy", "final val_loss", "best-epoch val_loss")
    headers = ["variant", "epochs", "s / epoch", "parameters", *labels]
    rows = []
    for _, r in summary.iterrows():
        counts = [_number(r["epochs"], "g"), _number(r["seconds_per_epoch"], ".2f")]
        estimates = [" ".join(cell for cell in _estimate(r, f"{c}_") if cell != "–") for c in columns]
        rows.append(
            [r["variant"], *counts, _number(r["parameter_count"], ",.0f"), *(e or "–" for e in estimates)]
        )
    return "table", headers, rows


def _effects_table(effects: pd.DataFrame) -> tuple[str, list[str], list[list[str]]]:
    headers = ["factor", "level", "runs", *ESTIMATE, *COMPARISON]
    rows = [
        [r["factor"], r["level"], str(r["n_runs"]), *_estimate(r), *_comparison(r)]
        for _, r in effects.iterrows()
    ]
    return "table", headers, rows


def _estimate(row: pd.Series, prefix: str = "") -> list[str]:
    """``mean ± std`` and ``[ci_low, ci_high]`` cells of the columns starting with ``prefix``."""
    mean, std = row[f"{prefix}mean"], row[f"{prefix}std"]
    spread = _number(mean) if math.isnan(std) else f"{_number(mean)} ± {_number(std)}"
    return [spread, _interval(row[f"{prefix}ci_low"], row[f"{prefix}ci_high"])]


def _comparison(row: pd.Series) -> list[str]:
    interval = _interval(row["difference_ci_low"], row["difference_ci_high"])
    seeds = row["seeds_needed"]
    seeds_text = "∞" if seeds == math.inf else _number(seeds, ",.0f")
    tested = [row["test"] or "–", _p(row["p_value"]), _p(row["p_adjusted"]), row["verdict"]]
    return [
        _number(row["difference"], "+.4f"),
        interval,
        *tested,
        _number(row["detectable_difference"]),
        seeds_text,
    ]


def _p(p_value: float) -> str:
    return "–" if math.isnan(p_value) else ("< 0.001" if p_value < 0.001 else f"{p_value:.3f}")


def _number(value: float, spec: str = ".4f") -> str:
    return "–" if value is None or math.isnan(value) else format(value, spec)


def _interval(low: float, high: float) -> str:
    return "–" if math.isnan(low) else f"[{_number(low)}, {_number(high)}]"
