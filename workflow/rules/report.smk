# The experiment's summary: report.md (seed, pseudo-mask and val mIoU side by side) and the figures and tables of
# `snakemake --report results/<experiment>/report.html` (captions in workflow/report/, the landing page is
# workflow/report/workflow.rst). The IRN log, the mmengine work dir and the benchmark TSVs are read from where the
# other rules leave them (a log, a params folder, benchmark: files are not rule outputs, so they are params here);
# the model files stand for them as inputs.


rule report:
    input:
        seed="results/{experiment}/metrics/seed_miou.json",
        mask="results/{experiment}/metrics/mask_miou.json",
        val="results/{experiment}/metrics/val_miou.json",
        voc=voc_input,
        eval_labels=f"results/{{experiment}}/data/labels/{config['data']['eval_split']}.json",
        val_labels=f"results/{{experiment}}/data/labels/{config['data']['val_split']}.json",
        seeds="results/{experiment}/seeds/index.json",
        pseudo_masks="results/{experiment}/pseudo_masks/index.json",
        val_predictions="results/{experiment}/val_predictions/index.json",
        bas_loss_log="results/{experiment}/bas_seed/loss_log.jsonl",
        cam_loss_log=(["results/{experiment}/bas_seed/cam_loss_log.jsonl"] if config["seeds"]["fuse_cam"] else []),
        pretraining_loss_log=(["results/{experiment}/pretraining/cam_loss_log.jsonl"] if PRETRAINING else []),
        irn_model="results/{experiment}/irn/model.pt",
        segmenter="results/{experiment}/segment/model.pth",
    output:
        md="results/{experiment}/report.md",
        summary="results/{experiment}/report/summary.rst",
        metrics=report(
            "results/{experiment}/report/metrics.html",
            caption="../report/metrics.rst",
            category="Metrics",
            subcategory="mIoU",
            labels={"table": "seed, mask and val mIoU, IoU per class"},
        ),
        sweep=report(
            "results/{experiment}/report/seed_sweep.png",
            caption="../report/seed_sweep.rst",
            category="Metrics",
            subcategory="Seeds",
            labels={"result": "threshold sweep (plot)"},
        ),
        ablation=report(
            "results/{experiment}/report/seed_ablation.html",
            caption="../report/seed_ablation.rst",
            category="Metrics",
            subcategory="Seeds",
            labels={"result": "ablation: maps and thresholds (table)"},
        ),
        seed_loss=report(
            "results/{experiment}/report/loss_seed_network.png",
            caption="../report/loss_seed_network.rst",
            category="Training",
            labels={
                "stage": ("0. pretraining CAM, " if PRETRAINING else "")
                + "1. BAS seed network"
                + (" and CAM" if config["seeds"]["fuse_cam"] else "")
            },
        ),
        irn_loss=report(
            "results/{experiment}/report/loss_irn.png",
            caption="../report/loss_irn.rst",
            category="Training",
            labels={"stage": "2. IRN"},
        ),
        segmenter_loss=report(
            "results/{experiment}/report/loss_segmenter.png",
            caption="../report/loss_segmenter.rst",
            category="Training",
            labels={"stage": "3. DeepLabV2"},
        ),
        train_samples=report(
            "results/{experiment}/report/samples_eval_split.png",
            caption="../report/samples_eval_split.rst",
            category="Samples",
            # one label: with two results, Snakemake turns a second label with two values into a toggle
            labels={"images": f"{config['data']['eval_split']} (eval split): image, seed, pseudo mask, ground truth"},
        ),
        val_samples=report(
            "results/{experiment}/report/samples_val.png",
            caption="../report/samples_val.rst",
            category="Samples",
            labels={"images": f"{config['data']['val_split']}: image, prediction, ground truth"},
        ),
        timing=report(
            "results/{experiment}/report/timing.html",
            caption="../report/timing.rst",
            category="Timing",
            labels={"table": "wall time and peak memory per rule"},
        ),
    log:
        "results/{experiment}/logs/report.log",
    params:
        root=voc_root,
        class_names=CLASS_NAMES,
        cam=lambda wildcards, input: (f" --cam-loss-log {input.cam_loss_log}" if input.cam_loss_log else ""),
        pretraining=lambda wildcards, input: (
            f" --pretraining-loss-log {input.pretraining_loss_log}" if input.pretraining_loss_log else ""
        ),
        irn_log=lambda wildcards: f"results/{wildcards.experiment}/logs/train_irn.log",
        work_dir=lambda wildcards: f"results/{wildcards.experiment}/segment/work",
        benchmarks=lambda wildcards: f"results/{wildcards.experiment}/benchmarks",
    shell:
        "{PY} -m wsss_common.report --out {output.md} --experiment {wildcards.experiment}"
        " {input.seed} {input.mask} {input.val}"
        " --voc-root {params.root} --class-names {params.class_names:q}"
        " --eval-labels {input.eval_labels} --val-labels {input.val_labels} --seeds {input.seeds}"
        " --pseudo-masks {input.pseudo_masks} --val-predictions {input.val_predictions}"
        " --bas-loss-log {input.bas_loss_log}{params.cam}{params.pretraining} --irn-log {params.irn_log}"
        " --segment-work-dir {params.work_dir} --benchmarks {params.benchmarks}"
        " --summary-rst {output.summary} --metrics-html {output.metrics} --sweep-png {output.sweep}"
        " --ablation-html {output.ablation} --seed-loss-png {output.seed_loss} --irn-loss-png {output.irn_loss}"
        " --segmenter-loss-png {output.segmenter_loss} --train-samples-png {output.train_samples}"
        " --val-samples-png {output.val_samples} --timing-html {output.timing} > {log} 2>&1"
