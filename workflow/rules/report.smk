# The experiment's summary: seed, pseudo-mask and val mIoU side by side.


rule report:
    input:
        seed="results/{experiment}/metrics/seed_miou.json",
        mask="results/{experiment}/metrics/mask_miou.json",
        val="results/{experiment}/metrics/val_miou.json",
    output:
        "results/{experiment}/report.md",
    log:
        "results/{experiment}/logs/report.log",
    shell:
        "{PY} -m wsss_common.report --out {output} --experiment {wildcards.experiment}"
        " {input.seed} {input.mask} {input.val} > {log} 2>&1"
