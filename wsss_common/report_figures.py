"""Figures and tables of the experiment report (``snakemake --report``): small functions from what the stages write
(metrics JSON, loss logs, seeds, masks, benchmark TSVs) to PNGs and HTML/RST tables. The CLI is
``python -m wsss_common.report`` (rule ``report``); the captions live in ``workflow/report/*.rst``.

Tables are ``(header, rows)`` pairs of strings, rendered by ``html_table`` / ``rst_table``. Plots are written with
matplotlib's object API (no pyplot state), atomically, as PNG.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from .io import DataError, load_label_png, load_npz, voc_palette, write_bytes_atomic
from .voc import IGNORE, load_image, load_mask

Table = tuple[list[str], list[list[str]]]

STAGES = {  # metrics file stem -> what it measures
    "seed_miou": "BAS seeds",
    "mask_miou": "IRN pseudo masks",
    "val_miou": "DeepLabV2 segmenter",
}
PALETTE = np.asarray(voc_palette(256), np.uint8).reshape(256, 3)


# ---------------------------------------------------------------------------------------------------------------
# label maps and image grids

def colorize(labels: np.ndarray) -> np.ndarray:
    """HxW class ids (0..C-1, 255 void) -> HxWx3 uint8 RGB in the VOC palette of the label PNGs."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {labels.shape}")
    return PALETTE[labels.astype(np.uint8)]


def seed_label_map(high_res: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """A ``wsss-seed/1`` map as class ids: ``argmax([threshold, maps...])`` through ``[0, *keys]``, ties to the
    background (docs/DEVELOPING.md; the same rule as bas_seed.evaluate, which wsss_common does not import)."""
    high_res = np.asarray(high_res, np.float32)
    if high_res.shape[0] == 0:
        return np.zeros(high_res.shape[1:], np.uint8)
    index = high_res.argmax(axis=0)
    value = np.take_along_axis(high_res, index[None], axis=0)[0]
    cls = np.asarray(keys, np.int64)[index]
    return np.where(value > np.float32(threshold), cls, 0).astype(np.uint8)


def fit_tile(image: np.ndarray, side: int, smooth: bool = False, fill: int = 255) -> np.ndarray:
    """Scale an HxWx3 uint8 image so its longer side is ``side`` (nearest neighbour, so label colours stay exact,
    unless ``smooth``) and centre it on a ``side`` x ``side`` canvas of colour ``fill``."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resample = Image.BILINEAR if smooth else Image.NEAREST
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((nw, nh), resample))
    out = np.full((side, side, 3), fill, np.uint8)
    top, left = (side - nh) // 2, (side - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out


def grid(rows: Sequence[Sequence[np.ndarray | None]], pad: int = 4, fill: int = 255) -> np.ndarray:
    """Tile HxWx3 uint8 images into one image: every cell as large as the largest tile (a tile is centred in its
    cell), ``pad`` pixels of colour ``fill`` around and between cells; None leaves a cell blank."""
    if not rows or not rows[0]:
        raise ValueError("grid needs at least one row and one column")
    n_cols = len(rows[0])
    if any(len(r) != n_cols for r in rows):
        raise ValueError("every grid row must have the same number of cells")
    tiles = [t for r in rows for t in r if t is not None]
    ch = max((t.shape[0] for t in tiles), default=1)
    cw = max((t.shape[1] for t in tiles), default=1)
    out = np.full((len(rows) * (ch + pad) + pad, n_cols * (cw + pad) + pad, 3), fill, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            if tile is None:
                continue
            y = pad + i * (ch + pad) + (ch - tile.shape[0]) // 2
            x = pad + j * (cw + pad) + (cw - tile.shape[1]) // 2
            out[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    return out


def sample_ids(ids: Iterable[str], n: int) -> list[str]:
    """A fixed, evenly spread sample of ``n`` ids (sorted order; the first and the last included)."""
    ids = sorted(ids)
    if n <= 0 or not ids:
        return []
    if n >= len(ids):
        return ids
    if n == 1:
        return ids[:1]
    return [ids[round(i * (len(ids) - 1) / (n - 1))] for i in range(n)]


def train_sample_row(voc_root, image_id: str, seed_file, mask_file, threshold: float) -> list[np.ndarray]:
    """image | seed (at ``threshold``) | pseudo mask | ground truth, as RGB arrays of the image's size."""
    seed = load_npz(seed_file)
    if str(seed.get("format")) != "wsss-seed/1":
        raise DataError(f"not a wsss-seed/1 file: {seed_file}")
    return [load_image(voc_root, image_id), colorize(seed_label_map(seed["high_res"], seed["keys"], threshold)),
            colorize(load_label_png(mask_file)), colorize(load_mask(voc_root, image_id))]


def val_sample_row(voc_root, image_id: str, prediction_file) -> list[np.ndarray]:
    """image | prediction | ground truth."""
    return [load_image(voc_root, image_id), colorize(load_label_png(prediction_file)),
            colorize(load_mask(voc_root, image_id))]


# ---------------------------------------------------------------------------------------------------------------
# plots

def _figure(width: float, height: float, dpi: int = 100):
    from matplotlib.figure import Figure  # object API: no pyplot, no global backend state

    return Figure(figsize=(width, height), dpi=dpi)


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as PNG, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes_atomic(path, buf.getvalue())


def legend_entries(class_names: Sequence[str]) -> list[tuple[str, tuple[float, float, float]]]:
    """(name, RGB in 0..1) of every class, then void, in the palette of the label maps."""
    entries = [(n, tuple(PALETTE[i] / 255.0)) for i, n in enumerate(class_names)]
    return entries + [("void / ignored (255)", tuple(PALETTE[IGNORE] / 255.0))]


def grid_figure(rows: Sequence[Sequence[np.ndarray]], column_titles: Sequence[str], row_titles: Sequence[str],
                class_names: Sequence[str], path, *, title: str, side: int = 144, pad: int = 4) -> None:
    """The sample grid with column titles, one id per row and the colour legend of the classes, as PNG; pixels of
    the grid are drawn 1:1."""
    from matplotlib.patches import Patch

    if not rows:  # no image of the split has every column (e.g. no pseudo masks for its ids)
        fig = _figure(6, 1.2)
        fig.text(0.5, 0.6, title, ha="center", va="center", fontsize=11)
        fig.text(0.5, 0.25, "no images to show", ha="center", va="center", fontsize=10, color="0.4")
        save_figure(fig, path)
        return
    tiles = [[fit_tile(t, side, smooth=(j == 0)) for j, t in enumerate(r)] for r in rows]
    image = grid(tiles, pad=pad)
    entries = legend_entries(class_names)
    ncol = min(len(entries), max(2, image.shape[1] // 130))
    dpi, left, top, bottom = 100, 100, 58, 16 + 20 * math.ceil(len(entries) / ncol)
    width, height = image.shape[1] + left + 16, image.shape[0] + top + bottom
    fig = _figure(width / dpi, height / dpi, dpi)
    ax = fig.add_axes((left / width, bottom / height, image.shape[1] / width, image.shape[0] / height))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    for j, name in enumerate(column_titles):
        ax.text(pad + j * (side + pad) + side / 2, -6, name, ha="center", va="bottom", fontsize=10)
    for i, name in enumerate(row_titles):
        ax.text(-8, pad + i * (side + pad) + side / 2, name, ha="right", va="center", fontsize=8)
    fig.text(0.5, 1 - 8 / height, title, ha="center", va="top", fontsize=11, wrap=True)
    handles = [Patch(facecolor=c, edgecolor="0.3", label=n) for n, c in entries]
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False, borderaxespad=0.3,
               handlelength=1.5, columnspacing=1.2)
    save_figure(fig, path)


def sweep_series(seed_metrics: dict) -> list[dict]:
    """The seed threshold sweeps of seed_miou.json as plot series: the seed itself (``threshold_sweep``) and each of
    ``variants`` that has one; each ``{"name", "thresholds", "miou", "best_threshold", "best_miou"}``."""
    entries = [("seed (what IRN gets)", seed_metrics)]
    entries += [(f"variant {name}", v) for name, v in (seed_metrics.get("variants") or {}).items()]
    series = []
    for name, m in entries:
        sweep = m.get("threshold_sweep") or {}
        if not sweep:
            continue
        points = sorted((float(t), math.nan if v is None else float(v)) for t, v in sweep.items())
        series.append({"name": name, "thresholds": [t for t, _ in points], "miou": [v for _, v in points],
                       "best_threshold": m.get("best_threshold"), "best_miou": m.get("miou")})
    return series


def sweep_plot(series: Sequence[dict], path, *, fixed_threshold: float | None = None,
               fixed_miou: float | None = None, image_specific_miou: float | None = None) -> None:
    """mIoU against the global background threshold, one curve per series, its best point marked; the fixed
    threshold (``seeds.eval_threshold``) as a vertical line and the image-specific thresholds' mIoU as a
    horizontal one."""
    fig = _figure(7.5, 4.4)
    ax = fig.subplots()
    for k, s in enumerate(series):
        label = s["name"]
        if s["best_threshold"] is not None and s["best_miou"] is not None:
            label += f": best {s['best_miou']:.1f} at t = {s['best_threshold']:g}"
        line, = ax.plot(s["thresholds"], s["miou"], "o-" if len(s["thresholds"]) <= 30 else "-",
                        lw=2.4 if k == 0 else 1.4, ms=4, label=label, zorder=3 - k)
        if s["best_threshold"] is not None and s["best_miou"] is not None:
            ax.plot([s["best_threshold"]], [s["best_miou"]], "*", ms=15 - 3 * min(k, 2), color=line.get_color(),
                    mec="black", zorder=4)
    if fixed_threshold is not None:
        label = f"fixed threshold {fixed_threshold:g}" + ("" if fixed_miou is None else f": {fixed_miou:.1f}")
        ax.axvline(fixed_threshold, color="0.4", ls=":", label=label)
    if image_specific_miou is not None:
        ax.axhline(image_specific_miou, color="0.4", ls="--",
                   label=f"image-specific thresholds (no GT): {image_specific_miou:.1f}")
    if not series:
        ax.text(0.5, 0.5, "no threshold sweep in seed_miou.json", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("global background threshold t (seed = argmax[t, class maps])")
    ax.set_ylabel("seed mIoU on the eval split (%)")
    ax.set_title("Seed threshold sweep (★ = best global threshold, swept against the ground truth)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def sweep_plot_of(seed_metrics: dict, path) -> None:
    """``sweep_plot`` of a seed_miou.json: its sweeps, fixed threshold and image-specific mIoU."""
    sweep_plot(sweep_series(seed_metrics), path, fixed_threshold=seed_metrics.get("fixed_threshold"),
               fixed_miou=seed_metrics.get("fixed_threshold_miou"),
               image_specific_miou=seed_metrics.get("image_specific_miou"))


def loss_terms(rows: Sequence[dict], exclude: Iterable[str] = ()) -> list[str]:
    """Numeric keys of the rows (first-seen order), without ``exclude``: the loss terms to plot."""
    exclude, terms = set(exclude), []
    for row in rows:
        for k, v in row.items():
            if k not in exclude and k not in terms and isinstance(v, (int, float)) and not isinstance(v, bool):
                terms.append(k)
    return terms


def loss_plot(panels: Sequence[dict], path, *, title: str) -> None:
    """One axes per panel ``{"title", "x", "xlabel", "rows", "terms", "missing"}``: every term of ``terms`` against
    ``x``, the first term drawn thicker (the total); a panel without rows says ``missing`` instead."""
    fig = _figure(6.2 * len(panels), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, p in zip(axes, panels):
        rows = p["rows"]
        if not rows:
            ax.text(0.5, 0.5, p.get("missing", "no data"), ha="center", va="center", wrap=True,
                    transform=ax.transAxes, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        for k, term in enumerate(p["terms"]):
            pts = [(r[p["x"]], r[term]) for r in rows if isinstance(r.get(term), (int, float)) and p["x"] in r]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "o-" if len(pts) < 30 else "-", lw=2.4 if k == 0 else 1.2, ms=3,
                        label=term.removeprefix("decode."))
        if rows:
            from matplotlib.ticker import MaxNLocator

            xs = sorted({r[p["x"]] for r in rows if p["x"] in r})
            if len(xs) <= 12 and all(float(x).is_integer() for x in xs):
                ax.set_xticks(xs)  # a few epochs: one tick each
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(p["xlabel"])
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
        ax.set_title(p["title"], fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# loss logs

def read_jsonl(path) -> list[dict]:
    """JSON lines (bas_seed's loss logs); a missing file is an empty list."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not a JSON line ({e})") from None
    return rows


_IRN_EPOCH = re.compile(r"\bepoch (\d+): (\w[\w.]* [-+0-9.eEnaif]+(?:, \w[\w.]* [-+0-9.eEnaif]+)*)\s*$")


def parse_irn_log(text: str) -> list[dict]:
    """IRN's per-epoch mean losses from its log (irn.train logs ``epoch N: loss 1.33, pos 0.53, ...``), as rows
    ``{"epoch": N, "loss": ..., ...}``; a later line for the same epoch (a resumed run) replaces the earlier."""
    by_epoch: dict[int, dict] = {}
    for line in text.splitlines():
        m = _IRN_EPOCH.search(line)
        if not m:
            continue
        row = {"epoch": int(m.group(1))}
        for pair in m.group(2).split(", "):
            key, value = pair.rsplit(" ", 1)
            try:
                row[key] = float(value)
            except ValueError:
                break
        else:
            by_epoch[row["epoch"]] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


def merge_resumed_runs(runs: Sequence[tuple[Sequence[dict], int | None]], key: str = "iter") -> list[dict]:
    """mmengine starts a timestamped folder per run. ``runs``: oldest first, each ``(rows, resumed_at)`` where
    ``resumed_at`` is the iteration the run resumed from (None for a fresh start). From the newest run back: keep its
    rows, and while the kept run was resumed at K, prepend the previous run's rows up to K. Runs before the last
    fresh start (an older training in the same work dir) are left out."""
    kept: list[dict] = []
    resumed_at: int | None = math.inf
    for rows, start in reversed(runs):
        if resumed_at is None:
            break
        kept = [r for r in rows if r[key] <= resumed_at and (not kept or r[key] < kept[0][key])] + kept
        resumed_at = start
    return kept


_RESUMED = re.compile(r"resumed epoch: \d+, iter: (\d+)")


def resumed_at(log_text: str) -> int | None:
    """The iteration an mmengine run resumed from (its log's ``resumed epoch: E, iter: K``), None if it did not."""
    m = _RESUMED.search(log_text)
    return int(m.group(1)) if m else None


def read_mmengine_scalars(work_dir) -> list[dict]:
    """The training rows (those with a ``loss``) of ``<work_dir>/<timestamp>/vis_data/scalars.json``, the JSON lines
    mmengine's LocalVisBackend writes, joined over the runs of one training (``merge_resumed_runs``; whether a run
    resumed is read from its ``<timestamp>/<timestamp>.log``)."""
    runs = []
    for f in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        log = f.parent.parent / f"{f.parent.parent.name}.log"
        rows = [r for r in read_jsonl(f) if "loss" in r and "iter" in r]
        runs.append((rows, resumed_at(log.read_text(errors="replace")) if log.is_file() else None))
    return merge_resumed_runs(runs)


# ---------------------------------------------------------------------------------------------------------------
# tables

def _num(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return str(v)


def stage_name(stem: str) -> str:
    return STAGES.get(stem, stem)


def miou_note(stem: str, m: dict) -> str:
    """How a stage's headline mIoU was obtained, in words."""
    if stem == "seed_miou":
        t = m.get("best_threshold")
        note = ("best global threshold " + (f"{t:g}" if isinstance(t, (int, float)) else "?")
                + ", swept against the ground truth as in the paper")
        return note + ("; on the edge of the sweep" if m.get("best_threshold_on_edge") else "")
    if stem == "mask_miou":
        return "IRN's random walk from the seeds"
    if stem == "val_miou":
        init = m.get("segmenter_init")
        return "DeepLabV2 trained on the pseudo masks" + (f", init: {init}" if init else "") + (
            ", CRF at test" if m.get("val_crf") else "")
    return ""


def miou_table(metrics: dict[str, dict]) -> Table:
    header = ["stage", "split", "images", "mIoU (%)", "how"]
    rows = [[stage_name(s), str(m.get("split")), str(m.get("n_images")), _num(m.get("miou")), miou_note(s, m)]
            for s, m in metrics.items()]
    return header, rows


def per_class_table(metrics: dict[str, dict]) -> Table:
    """IoU (%) per class (rows, in the order of the first metrics file) and stage (columns)."""
    classes: list[str] = []
    for m in metrics.values():
        classes += [c for c in m.get("per_class", {}) if c not in classes]
    header = ["class"] + [stage_name(s) for s in metrics]
    rows = [[c] + [_num(m.get("per_class", {}).get(c)) for m in metrics.values()] for c in classes]
    rows.append(["mean (mIoU)"] + [_num(m.get("miou")) for m in metrics.values()])
    return header, rows


def ablation_table(seed_metrics: dict) -> Table:
    """Seed mIoU of each map the export kept (the seed, then ``variants``) at its own best global threshold, and
    of the seed at the fixed and at the image-specific thresholds."""
    header = ["seed maps", "threshold", "mIoU (%)", "meaning"]
    m = seed_metrics

    def best(v):
        t = v.get("best_threshold")
        edge = v.get("best_threshold_on_edge", v.get("on_edge"))
        return ("n/a" if t is None else f"best {t:g} (GT-swept)") + (", on sweep edge" if edge else "")

    rows = [["seed (what IRN gets)", best(m), _num(m.get("miou")), "the headline seed mIoU"]]
    for name, v in (m.get("variants") or {}).items():
        rows.append([name, best(v), _num(v.get("miou")), str(v.get("meaning", ""))])
    if m.get("fixed_threshold") is not None:
        rows.append(["seed", f"fixed {m['fixed_threshold']:g} (seeds.eval_threshold)",
                     _num(m.get("fixed_threshold_miou")), "one threshold set in the config, no ground truth"])
    if m.get("image_specific_miou") is not None:
        mean, std = _num(m.get("image_specific_threshold_mean")), _num(m.get("image_specific_threshold_std"))
        rows.append(["seed", f"per image, mean {mean} ± {std}", _num(m.get("image_specific_miou")),
                     "L_bas + L_ac threshold per image, no ground truth"])
    return header, rows


BENCHMARK_NAME = re.compile(r"(?P<rule>.+?)(?:_(?P<shard>\d+))?")


def _float(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def read_benchmark(path) -> dict:
    """One ``benchmark:`` TSV (columns s, h:m:s, max_rss, ..., cpu_time; one row per repeat) as
    ``{"rule", "shard", "s", "max_rss", "cpu_time"}`` (means over repeats, None where not measured). The rule is
    the file name without a trailing ``_<shard>`` (``export_seeds_1.tsv``), or the ``rule`` column when present
    (``--benchmark-extended``)."""
    path = Path(path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    name = BENCHMARK_NAME.fullmatch(path.stem)
    out = {"rule": (rows[0].get("rule") if rows and rows[0].get("rule") else name["rule"]), "shard": name["shard"],
           "file": path.name}
    for col in ("s", "max_rss", "cpu_time"):
        values = [x for x in (_float(r.get(col)) for r in rows) if x is not None]
        out[col] = sum(values) / len(values) if values else None
    return out


def read_benchmarks(folder) -> list[dict]:
    """Every ``*.tsv`` of the folder (``read_benchmark``); a missing or empty folder gives []."""
    folder = Path(folder)
    return [read_benchmark(p) for p in sorted(folder.glob("*.tsv"))] if folder.is_dir() else []


def timing_table(benchmarks: Sequence[dict]) -> Table:
    """Per rule: jobs, wall seconds summed over its jobs (shards), the longest job, peak RSS (MB) and CPU seconds;
    slowest rule first, then a total row (a sum of job times: parallel jobs overlap in real time)."""
    header = ["rule", "jobs", "wall time (s)", "longest job (s)", "peak RSS (MB)", "CPU time (s)"]
    by_rule: dict[str, list[dict]] = {}
    for b in benchmarks:
        by_rule.setdefault(b["rule"], []).append(b)

    def agg(values, how):
        values = [v for v in values if v is not None]
        return how(values) if values else None

    stats = [{"rule": rule, "jobs": len(items), "s": agg((b["s"] for b in items), sum),
              "longest": agg((b["s"] for b in items), max), "rss": agg((b["max_rss"] for b in items), max),
              "cpu": agg((b["cpu_time"] for b in items), sum)} for rule, items in by_rule.items()]
    stats.sort(key=lambda r: -(r["s"] or 0))
    if stats:
        stats.append({"rule": "total", "jobs": sum(r["jobs"] for r in stats), "s": agg((r["s"] for r in stats), sum),
                      "longest": "", "rss": agg((r["rss"] for r in stats), max),
                      "cpu": agg((r["cpu"] for r in stats), sum)})
    rows = [[r["rule"], str(r["jobs"]), _num(r["s"], 1), _num(r["longest"], 1), _num(r["rss"], 0), _num(r["cpu"], 1)]
            for r in stats]
    return header, rows


TOTAL_ROWS = ("total", "mean (mIoU)")
_NUMBER = re.compile(r"-?\d+(\.\d+)?|n/a")


def html_table(table: Table, caption: str | None = None) -> str:
    """The table as HTML: numbers right-aligned (class "num"), a total / mean row in bold (class "total")."""
    header, rows = table
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    if not rows:
        out.append(f'<tr><td class="empty" colspan="{len(header)}">(none)</td></tr>')
    for row in rows:
        cls = ' class="total"' if row and row[0] in TOTAL_ROWS else ""
        cells = "".join(f'<td class="num">{html.escape(c)}</td>' if _NUMBER.fullmatch(c)
                        else f"<td>{html.escape(c)}</td>" for c in row)
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.2em;color:#1e293b}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}p.note{color:#475569;max-width:60em}
table{border-collapse:collapse;margin:.6em 0}caption{text-align:left;color:#475569;padding:.3em 0}
th,td{border:1px solid #cbd5e1;padding:.3em .7em;text-align:left;vertical-align:top}th{background:#f1f5f9}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.total td{font-weight:600;background:#f8fafc}
td.empty{text-align:center;color:#64748b}"""


def html_page(title: str, sections: Sequence[tuple[str, str, Table]], note: str = "") -> str:
    """A standalone HTML page (inline CSS, nothing external): a title, an optional note, and sections
    ``(heading, text, table)``."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if note:
        body.append(f'<p class="note">{html.escape(note)}</p>')
    for heading, text, table in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if text:
            body.append(f'<p class="note">{html.escape(text)}</p>')
        body.append(html_table(table))
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>' + html.escape(title)
            + f"</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def rst_escape(text: str) -> str:
    text = re.sub(r"([\\*`|_])", r"\\\1", str(text)) or r"\ "
    return text.replace("\n", " ")


def rst_table(table: Table, title: str = "", widths: Sequence[int] | None = None) -> str:
    """The table as an RST ``list-table`` (cells escaped; an empty table gets one "(none)" row)."""
    header, rows = table
    rows = rows or [["(none)"] + [""] * (len(header) - 1)]
    out = [f".. list-table:: {rst_escape(title)}".rstrip(), "   :header-rows: 1"]
    if widths:
        out.append("   :widths: " + " ".join(str(int(w)) for w in widths))
    out.append("")
    for row in [header, *rows]:
        out.append(f"   * - {rst_escape(row[0])}")
        out += [f"     - {rst_escape(c)}" for c in row[1:]]
    return "\n".join(out) + "\n"


def headline_lines(metrics: dict[str, dict]) -> list[str]:
    """One line per stage: its mIoU, split and how it was obtained (what ``make demo`` prints)."""
    return [f"{stage_name(s)}: {_num(m.get('miou'))} mIoU on {m.get('split')} ({miou_note(s, m)})"
            for s, m in metrics.items()]
