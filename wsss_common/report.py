"""The experiment's summary: ``python -m wsss_common.report --out REPORT.md --experiment NAME METRICS_JSON ...`` —
seed, pseudo-mask and val mIoU side by side, then per-class IoU (markdown). ``--print`` prints the headline mIoUs.

With the figure options (rule ``report``) it also renders what ``snakemake --report`` shows: the metrics, ablation
and timing tables (HTML, and the landing page's RST), the seed threshold sweep, the loss curves of BAS (and the CAM),
IRN and DeepLab, and image | seed | pseudo mask | prediction | ground truth grids of a fixed sample of eval-split and
val images. The figures are drawn by ``wsss_common.report_figures``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import report_figures as rf
from .io import DataError, read_json, write_text_atomic
from .shards import load_index
from .voc import load_label_cache

SAMPLES = 6  # images per sample grid (the same ids on every run: report_figures.sample_ids)


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


def summary_rst(experiment: str, metrics: dict[str, dict]) -> str:
    """The results part of the HTML report's landing page (included by workflow/report/workflow.rst): the mIoU of
    each stage. Kept short: the report centres its landing page vertically, and a page taller than the window loses
    its top."""
    return rf.rst_table(rf.miou_table(metrics), f"mIoU per stage, experiment {experiment}", widths=(20, 9, 9, 11, 51))


def write_tables(experiment: str, metrics: dict[str, dict], benchmarks: str, out: dict[str, str]) -> None:
    """The metrics, seed-ablation and timing pages (HTML) and the landing page's mIoU table (RST)."""
    write_text_atomic(out["metrics_html"], rf.html_page(
        f"mIoU of experiment {experiment}",
        [("mIoU per stage", "", rf.miou_table(metrics)), ("IoU per class (%)", "", rf.per_class_table(metrics))],
        note="Seeds and pseudo masks are scored on the eval split, the segmenter on val. The seed mIoU is taken at "
             "the best global background threshold of the sweep, chosen against the ground truth (as the BAS paper "
             "reports it): an upper bound of what one threshold gives."))
    write_text_atomic(out["ablation_html"], rf.html_page(
        f"Seed ablations of experiment {experiment}",
        [("Seed mIoU per map and threshold", "", rf.ablation_table(metrics["seed_miou"]))],
        note="Each map the seed export kept, before and after each fusion, at its own best global threshold (swept "
             "against the ground truth), then the seed at the thresholds that need no ground truth."))
    bench = rf.read_benchmarks(benchmarks)
    write_text_atomic(out["timing_html"], rf.html_page(
        f"Timing of experiment {experiment}", [("Per rule", "", rf.timing_table(bench))],
        note=f"From the benchmark: TSVs in {benchmarks}/ ({len(bench)} files; a sharded rule's jobs are summed). "
             "Peak RSS is the largest of its jobs; GPU memory is not measured."))
    write_text_atomic(out["summary_rst"], summary_rst(experiment, metrics))


def write_loss_curves(*, bas_loss_log: str, cam_loss_log: str | None, irn_log: str, segment_work_dir: str,
                      out: dict[str, str], pretraining_loss_log: str | None = None) -> None:
    """The loss curves of the seed network (after the pretraining's CAM and with the CAM baseline, when they ran),
    IRN (from its log) and DeepLab (mmengine)."""
    seed_panels = [{"title": "pretraining CAM (stand-in for ImageNet)", "x": "epoch", "xlabel": "epoch",
                    "rows": rf.read_jsonl(pretraining_loss_log),
                    "missing": f"no loss log at {pretraining_loss_log}"}] if pretraining_loss_log else []
    seed_panels.append({"title": "BAS seed network", "x": "epoch", "xlabel": "epoch",
                        "rows": rf.read_jsonl(bas_loss_log), "missing": f"no loss log at {bas_loss_log}"})
    if cam_loss_log:
        seed_panels.append({"title": "CAM baseline", "x": "epoch", "xlabel": "epoch",
                            "rows": rf.read_jsonl(cam_loss_log), "missing": f"no loss log at {cam_loss_log}"})
    for p in seed_panels:
        p["terms"] = rf.loss_terms(p["rows"], exclude=("epoch", "step", "lr", "seconds"))
    rf.loss_plot(seed_panels, out["seed_loss_png"], title="Seed network: mean loss terms per epoch")

    irn_rows = rf.parse_irn_log(Path(irn_log).read_text(errors="replace")) if Path(irn_log).is_file() else []
    rf.loss_plot([{"title": "IRN", "x": "epoch", "xlabel": "epoch", "rows": irn_rows,
                   "terms": rf.loss_terms(irn_rows, exclude=("epoch",)),
                   "missing": f"no 'epoch N: loss ...' lines in {irn_log}"}],
                 out["irn_loss_png"], title="IRN: mean loss terms per epoch (from its log)")

    seg_rows = rf.read_mmengine_scalars(segment_work_dir)
    seg_terms = [t for t in rf.loss_terms(seg_rows) if t == "loss" or ".loss" in t or t.startswith("loss")]
    rf.loss_plot([{"title": "DeepLabV2", "x": "iter", "xlabel": "iteration (batch)", "rows": seg_rows,
                   "terms": seg_terms, "missing": f"no vis_data/scalars.json under {segment_work_dir}"}],
                 out["segmenter_loss_png"], title="DeepLab: training loss per logged iteration (mmengine scalars)")


def write_sample_grids(*, metrics: dict[str, dict], class_names: list[str], voc_root: str, eval_labels: str,
                       val_labels: str, seeds: str, pseudo_masks: str, val_predictions: str, out: dict[str, str],
                       samples: int) -> None:
    """image | seed | pseudo mask | ground truth for a fixed sample of the eval split (the seed at the best global
    threshold of seed_miou.json), and image | prediction | ground truth for val."""
    threshold = metrics["seed_miou"].get("best_threshold")
    if threshold is None:
        raise DataError("seed_miou.json has no best_threshold (it is written by bas_seed.evaluate)")
    seed_index, mask_index = load_index(seeds), load_index(pseudo_masks)
    ids = rf.sample_ids([i for i in load_label_cache(eval_labels) if i in seed_index and i in mask_index], samples)
    rf.grid_figure([rf.train_sample_row(voc_root, i, seed_index[i], mask_index[i], threshold) for i in ids],
                   ["image", f"seed (t = {threshold:g})", "pseudo mask", "ground truth"], ids, class_names,
                   out["train_samples_png"],
                   title=f"Eval split ({metrics['seed_miou'].get('split')}): seeds at the best global threshold "
                         "(GT-swept) and IRN pseudo masks")
    pred_index = load_index(val_predictions)
    ids = rf.sample_ids([i for i in load_label_cache(val_labels) if i in pred_index], samples)
    rf.grid_figure([rf.val_sample_row(voc_root, i, pred_index[i]) for i in ids],
                   ["image", "prediction", "ground truth"], ids, class_names, out["val_samples_png"],
                   title=f"{metrics['val_miou'].get('split')}: DeepLabV2 predictions")


FIGURE_OUTPUTS = ("summary_rst", "metrics_html", "ablation_html", "timing_html", "sweep_png", "seed_loss_png",
                  "irn_loss_png", "segmenter_loss_png", "train_samples_png", "val_samples_png")
FIGURE_INPUTS = ("voc_root", "class_names", "eval_labels", "val_labels", "seeds", "pseudo_masks", "val_predictions",
                 "bas_loss_log", "irn_log", "segment_work_dir", "benchmarks")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="the markdown summary to write")
    p.add_argument("--experiment", required=True)
    p.add_argument("--print", action="store_true", help="print the headline mIoU of each metrics file")
    p.add_argument("metrics", nargs="+", help="metrics JSON files (seed_miou.json, mask_miou.json, val_miou.json)")
    g = p.add_argument_group("figures and tables for snakemake --report (give all or none)")
    for name in FIGURE_INPUTS:
        g.add_argument("--" + name.replace("_", "-"))
    g.add_argument("--cam-loss-log", help="the CAM baseline's loss log (when seeds.fuse_cam)")
    g.add_argument("--pretraining-loss-log", help="the pretraining CAM's loss log (when pretraining.enabled)")
    g.add_argument("--samples", type=int, default=SAMPLES, help="images per sample grid")
    for name in FIGURE_OUTPUTS:
        g.add_argument("--" + name.replace("_", "-"), metavar="OUT")
    a = p.parse_args(argv)
    metrics = {Path(f).stem: read_json(f) for f in a.metrics}
    if a.out:
        write_text_atomic(a.out, report_markdown(a.experiment, metrics))
    given = {n for n in FIGURE_INPUTS + FIGURE_OUTPUTS if getattr(a, n) is not None}
    if given:
        missing = set(FIGURE_INPUTS + FIGURE_OUTPUTS) - given
        if missing:
            p.error("figure options missing: " + ", ".join("--" + n.replace("_", "-") for n in sorted(missing)))
        out = {n: getattr(a, n) for n in FIGURE_OUTPUTS}
        write_tables(a.experiment, metrics, a.benchmarks, out)
        rf.sweep_plot_of(metrics["seed_miou"], out["sweep_png"])
        write_loss_curves(bas_loss_log=a.bas_loss_log, cam_loss_log=a.cam_loss_log, irn_log=a.irn_log,
                          segment_work_dir=a.segment_work_dir, out=out, pretraining_loss_log=a.pretraining_loss_log)
        write_sample_grids(metrics=metrics, class_names=json.loads(a.class_names), voc_root=a.voc_root,
                           eval_labels=a.eval_labels, val_labels=a.val_labels, seeds=a.seeds,
                           pseudo_masks=a.pseudo_masks, val_predictions=a.val_predictions, out=out, samples=a.samples)
    if a.print:
        print("\n".join(rf.headline_lines(metrics)))
        from .devices import describe_machine  # imports torch: only here, after the metrics are printed
        print(f"machine: {describe_machine()} (README's numbers and times say which machine they came from)")


if __name__ == "__main__":
    main()
