# Stage 3: IRN refinement. Seeds -> dense-CRF IR labels -> inter-pixel relation network -> random walk -> pseudo
# masks of the train split, evaluated on the eval split. Each step gets only the irn keys it reads, so changing
# e.g. the random-walk settings reruns the masks but not the training.


rule irn_thresholds:
    # numbers, or `auto` resolved from the seeds' image-specific thresholds (irn/thresholds.py); one file for the
    # CRF pair (step=ir_labels) and one for the walk (step=walk), so each reruns only its own step
    input:
        seeds="results/{experiment}/seeds/index.json",
    output:
        "results/{experiment}/irn/thresholds_{step}.json",
    log:
        "results/{experiment}/logs/irn_thresholds_{step}.log",
    wildcard_constraints:
        step="ir_labels|walk",
    # ahead of eval_seeds, which becomes ready with it: see make_ir_labels
    priority: 1
    params:
        names=lambda wildcards: ",".join(IRN_THRESHOLDS_OF[wildcards.step]),
        settings=lambda wildcards: as_json(
            {k: config["irn"][k] for k in IRN_THRESHOLDS_OF[wildcards.step] + ("auto_reference",)}
        ),
    shell:
        "{PY} -m irn.thresholds --seeds {input.seeds} --settings {params.settings:q} --keys {params.names}"
        " --out {output} > {log} 2>&1"


rule make_ir_labels:
    input:
        voc=voc_input,
        seeds="results/{experiment}/seeds/index.json",
        thresholds="results/{experiment}/irn/thresholds_ir_labels.json",
    output:
        directory("results/{experiment}/ir_labels/shard_{shard}"),
    log:
        "results/{experiment}/logs/make_ir_labels_{shard}.log",
    benchmark:
        "results/{experiment}/benchmarks/make_ir_labels_{shard}.tsv"
    # these and irn_thresholds go ahead of eval_seeds (report only), which becomes ready with irn_thresholds after
    # merge_seeds: on 2 cores it took one shard's core for 6 s of the demo's critical path (session 19); it now
    # runs after them, where it holds train_irn back by ~2 s (session 20)
    priority: 1
    params:
        root=voc_root,
        num_shards=config["irn"]["label_shards"],
        # the thresholds come resolved in {input.thresholds} (whose rule has them as params)
        settings=as_json({"crf": config["irn"]["crf"]}),
    shell:
        "{PY} -m irn.make_ir_labels --voc-root {params.root} --seeds {input.seeds} --out-dir {output}"
        " --thresholds {input.thresholds}"
        " --shard {wildcards.shard} --num-shards {params.num_shards} --settings {params.settings:q} > {log} 2>&1"


rule merge_ir_labels:
    input:
        shards=expand(
            "results/{{experiment}}/ir_labels/shard_{shard}",
            shard=shard_range(config["irn"]["label_shards"]),
        ),
        labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
    output:
        "results/{experiment}/ir_labels/index.json",
    log:
        "results/{experiment}/logs/merge_ir_labels.log",
    shell:
        "{PY} -m wsss_common.merge_shards --out {output} --suffix .png --ids-from {input.labels}"
        " {input.shards} > {log} 2>&1"


rule train_irn:
    input:
        voc=voc_input,
        ir_labels="results/{experiment}/ir_labels/index.json",
        # a dependency only when irn.init_from_bas; train reads --bas-checkpoint only then
        bas=(["results/{experiment}/bas_seed/model.pt"] if config["irn"]["init_from_bas"] else []),
        weights=lambda wildcards: [] if config["irn"]["init_from_bas"] else imagenet_input(),
    output:
        "results/{experiment}/irn/model.pt",
    log:
        "results/{experiment}/logs/train_irn.log",
    benchmark:
        "results/{experiment}/benchmarks/train_irn.tsv"
    threads: 2
    resources:
        gpu=gpus_for("irn"),
    params:
        root=voc_root,
        device=config["device"],
        weights=imagenet_option,
        settings=as_json(
            {
                k: config["irn"][k]
                for k in (
                    "backbone_depth",
                    "init_from_bas",
                    "freeze_backbone",
                    "crop_size",
                    "scale_range",
                    "batch_size",
                    "epochs",
                    "max_train_images",
                    "lr",
                    "displacement_lr_mult",
                    "weight_decay",
                    "momentum",
                    "reference_momentum_quirk",
                    "poly_power",
                    "train_radius",
                    "seed",
                    "num_workers",
                    "cache_images",
                    "amp",
                )
            }
        ),
    shell:
        "{PY} -m wsss_common.gpu_slot --gpus {resources.gpu} --"
        " {PY} -m irn.train --voc-root {params.root} --ir-labels {input.ir_labels} --out {output}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} --resume{params.weights}"
        " --bas-checkpoint results/{wildcards.experiment}/bas_seed/model.pt > {log} 2>&1"


rule make_pseudo_masks:
    input:
        voc=voc_input,
        seeds="results/{experiment}/seeds/index.json",
        model="results/{experiment}/irn/model.pt",
        labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
        thresholds="results/{experiment}/irn/thresholds_walk.json",
    output:
        directory("results/{experiment}/pseudo_masks/shard_{shard}"),
    log:
        "results/{experiment}/logs/make_pseudo_masks_{shard}.log",
    benchmark:
        "results/{experiment}/benchmarks/make_pseudo_masks_{shard}.tsv"
    threads: 1
    resources:
        gpu=inference_gpus(),
    params:
        root=voc_root,
        device=config["device"],
        num_shards=config["irn"]["mask_shards"],
        settings=as_json(
            {
                k: config["irn"][k]
                for k in (
                    "infer_pad_size",
                    "infer_flip",
                    "seed_power",
                    "rw_radius",
                    "beta",
                    "exp_times",
                )
            }
        ),
    shell:
        "{PY} -m wsss_common.gpu_slot --gpus {resources.gpu} -- {PY} -m irn.make_pseudo_masks"
        " --voc-root {params.root} --seeds {input.seeds} --model {input.model}"
        " --labels {input.labels} --out-dir {output} --shard {wildcards.shard} --num-shards {params.num_shards}"
        " --thresholds {input.thresholds}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} > {log} 2>&1"


rule merge_pseudo_masks:
    input:
        shards=expand(
            "results/{{experiment}}/pseudo_masks/shard_{shard}",
            shard=shard_range(config["irn"]["mask_shards"]),
        ),
        labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
    output:
        "results/{experiment}/pseudo_masks/index.json",
    log:
        "results/{experiment}/logs/merge_pseudo_masks.log",
    shell:
        "{PY} -m wsss_common.merge_shards --out {output} --suffix .png --ids-from {input.labels}"
        " {input.shards} > {log} 2>&1"


rule eval_masks:
    input:
        voc=voc_input,
        index="results/{experiment}/pseudo_masks/index.json",
        train_labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
    output:
        json="results/{experiment}/metrics/mask_miou.json",
        md="results/{experiment}/metrics/mask_miou.md",
    log:
        "results/{experiment}/logs/eval_masks.log",
    params:
        root=voc_root,
        split=config["data"]["eval_split"],
        class_names=CLASS_NAMES,
    shell:
        "{PY} -m wsss_common.evaluate --voc-root {params.root} --split {params.split} --index {input.index}"
        " --class-names {params.class_names:q} --train-labels {input.train_labels} --out {output.json} > {log} 2>&1"


rule masks:
    input:
        f"results/{EXP}/metrics/mask_miou.json",
