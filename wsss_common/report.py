"""One markdown summary of an experiment: ``python -m wsss_common.report --out REPORT.md --experiment NAME
METRICS_JSON ...`` — seed, pseudo-mask and val mIoU side by side, then per-class IoU."""
from __future__ import annotations

import argparse
from pathlib import Path

from .io import read_json, write_text_atomic


def report_markdown(experiment: str, metrics: dict[str, dict]) -> str:
    names = list(metrics)
    lines = [f"# Experiment {experiment}", "", "| stage | split | images | mIoU (%) |", "|---|---|---|---|"]
    for name, m in metrics.items():
        miou = "n/a" if m.get("miou") is None else f"{m['miou']:.2f}"
        lines.append(f"| {name} | {m.get('split')} | {m.get('n_images')} | {miou} |")
    classes = list(next(iter(metrics.values()))["per_class"]) if metrics else []
    lines += ["", "| class | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for c in classes:
        cells = []
        for n in names:
            v = metrics[n]["per_class"].get(c)
            cells.append("n/a" if v is None else f"{v:.2f}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    for name, m in metrics.items():
        extra = {k: v for k, v in m.items() if k not in ("miou", "per_class", "split", "n_images")
                 and not isinstance(v, (dict, list))}
        if extra:
            lines += ["", f"## {name}", ""] + [f"- {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("metrics", nargs="+")
    a = p.parse_args(argv)
    metrics = {Path(f).stem: read_json(f) for f in a.metrics}
    write_text_atomic(a.out, report_markdown(a.experiment, metrics))


if __name__ == "__main__":
    main()
