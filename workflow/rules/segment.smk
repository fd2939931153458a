# Stage 4: DeepLabV2 trained in mmsegmentation on the pseudo masks -> val predictions -> val mIoU.


rule train_segmenter:
    input:
        voc=voc_input,
        pseudo_masks="results/{experiment}/pseudo_masks/index.json",
        # the init file as an input: replacing it retrains the segmenter (and only what follows)
        init=segment_init_input(),
        # segment.init.from_bas: the backbone starts from the BAS network's ResNet
        bas=["results/{experiment}/bas_seed/model.pt"] if config["segment"]["init"]["from_bas"] else [],
    output:
        model="results/{experiment}/segment/model.pth",
        summary="results/{experiment}/segment/model.json",
        card="results/{experiment}/segment/model_card.json",
    log:
        "results/{experiment}/logs/train_segmenter.log",
    benchmark:
        "results/{experiment}/benchmarks/train_segmenter.tsv"
    threads: 2
    resources:
        gpu=gpus_for("segment"),
    params:
        root=voc_root,
        class_names=CLASS_NAMES,
        # the training part of the section only: prediction settings must not retrain the model
        settings=as_json({k: v for k, v in config["segment"].items() if k not in ("predict", "predict_shards", "gpus")}),
        work_dir=lambda wildcards: f"results/{wildcards.experiment}/segment/work",
        device=config["device"],
        bas=lambda wildcards, input: f"--bas-checkpoint {input.bas}" if input.bas else "",
    shell:
        "{PY} -m wsss_common.gpu_slot --gpus {resources.gpu} --"
        " {PY} -m segment.train {params.bas} --voc-root {params.root} --pseudo-masks {input.pseudo_masks}"
        " --class-names {params.class_names:q} --settings {params.settings:q} --work-dir {params.work_dir}"
        " --out {output.model} --resume --device {params.device} --threads {threads} > {log} 2>&1"


rule predict_val:
    input:
        voc=voc_input,
        model="results/{experiment}/segment/model.pth",
    output:
        directory("results/{experiment}/val_predictions/shard_{shard}"),
    log:
        "results/{experiment}/logs/predict_val_{shard}.log",
    benchmark:
        "results/{experiment}/benchmarks/predict_val_{shard}.tsv"
    threads: 1
    resources:
        gpu=inference_gpus(),
    params:
        root=voc_root,
        split=config["data"]["val_split"],
        settings=as_json({"predict": config["segment"]["predict"]}),
        num_shards=config["segment"]["predict_shards"],
        device=config["device"],
    shell:
        "{PY} -m wsss_common.gpu_slot --gpus {resources.gpu} -- {PY} -m segment.predict --model {input.model} --voc-root {params.root} --split {params.split}"
        " --settings {params.settings:q} --out-dir {output} --shard {wildcards.shard}"
        " --num-shards {params.num_shards} --device {params.device} --threads {threads} > {log} 2>&1"


rule merge_val_predictions:
    input:
        shards=expand(
            "results/{{experiment}}/val_predictions/shard_{shard}",
            shard=shard_range(config["segment"]["predict_shards"]),
        ),
        labels=f"results/{{experiment}}/data/labels/{config['data']['val_split']}.json",
    output:
        "results/{experiment}/val_predictions/index.json",
    log:
        "results/{experiment}/logs/merge_val_predictions.log",
    shell:
        "{PY} -m wsss_common.merge_shards --out {output} --suffix .png --ids-from {input.labels}"
        " {input.shards} > {log} 2>&1"


rule eval_val:
    input:
        voc=voc_input,
        index="results/{experiment}/val_predictions/index.json",
        card="results/{experiment}/segment/model_card.json",
        train_labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
    output:
        "results/{experiment}/metrics/val_miou.json",
    log:
        "results/{experiment}/logs/eval_val.log",
    params:
        root=voc_root,
        split=config["data"]["val_split"],
        class_names=CLASS_NAMES,
        extra=as_json(
            {
                "val_scales": config["segment"]["predict"]["scales"],
                "val_flip": config["segment"]["predict"]["flip"],
                "val_crf": config["segment"]["predict"]["crf"]["enabled"],
            }
        ),
    shell:
        "{PY} -m wsss_common.evaluate --voc-root {params.root} --split {params.split} --index {input.index}"
        " --class-names {params.class_names:q} --train-labels {input.train_labels} --out {output} --extra {params.extra:q}"
        " --extra-from {input.card} > {log} 2>&1"


rule voc_val_miou:
    input:
        f"results/{EXP}/metrics/val_miou.json",
