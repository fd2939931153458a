# Stages 1-2: BAS seed network (and the CAM baseline when seeds.fuse_cam) -> sharded seed export -> merged index
# -> seed mIoU on the eval split. Each step gets only the seeds keys it reads, so e.g. a new sweep re-evaluates
# without re-exporting.


rule train_bas:
    input:
        voc=voc_input,
        labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
        weights=imagenet_input,
    output:
        model="results/{experiment}/bas_seed/model.pt",
        loss_log="results/{experiment}/bas_seed/loss_log.jsonl",
    log:
        "results/{experiment}/logs/train_bas.log",
    benchmark:
        "results/{experiment}/benchmarks/train_bas.tsv"
    threads: 4
    resources:
        gpu=gpus_for("bas"),
    params:
        method="bas",
        root=voc_root,
        settings=as_json(seed_net_settings("bas")),
        device=config["device"],
        seed=config["seed"],
        weights=imagenet_option,
        launch=torchrun_launch,
    shell:
        "{PY} -m wsss_common.gpu_slot --gpus {resources.gpu} -- {params.launch} bas_seed.train"
        " --voc-root {params.root} --labels {input.labels} --settings {params.settings:q} --method {params.method}"
        " --out {output.model} --loss-log {output.loss_log} --device {params.device} --threads {threads}"
        " --seed {params.seed}{params.weights} --resume > {log} 2>&1"


# IRN's CAM baseline: the same training step with method cam (its recipe is the bas.cam sub-section)
use rule train_bas as train_cam with:
    output:
        model="results/{experiment}/bas_seed/cam_model.pt",
        loss_log="results/{experiment}/bas_seed/cam_loss_log.jsonl",
    log:
        "results/{experiment}/logs/train_cam.log",
    benchmark:
        "results/{experiment}/benchmarks/train_cam.tsv"
    params:
        method="cam",
        settings=as_json(seed_net_settings("cam")),


rule export_seeds:
    input:
        voc=voc_input,
        model="results/{experiment}/bas_seed/model.pt",
        cam_model=(["results/{experiment}/bas_seed/cam_model.pt"] if config["seeds"]["fuse_cam"] else []),
        labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
        eval_labels=f"results/{{experiment}}/data/labels/{config['data']['eval_split']}.json",
    output:
        directory("results/{experiment}/seeds/shard_{shard}"),
    log:
        "results/{experiment}/logs/export_seeds_{shard}.log",
    benchmark:
        "results/{experiment}/benchmarks/export_seeds_{shard}.tsv"
    threads: 1
    resources:
        gpu=inference_gpus(),
    params:
        root=voc_root,
        num_shards=config["seeds"]["shards"],
        settings=as_json(
            {
                k: config["seeds"][k]
                for k in ("scales", "foreground_fusion", "foreground_renormalize", "fuse_cam", "threshold_search")
            }
        ),
        device=config["device"],
        optional=lambda wildcards, input: (f" --cam-model {input.cam_model}" if input.cam_model else ""),
    shell:
        "{PY} -m wsss_common.gpu_slot --gpus {resources.gpu} -- {PY} -m bas_seed.export"
        " --voc-root {params.root} --labels {input.labels} --eval-labels {input.eval_labels}"
        " --model {input.model}{params.optional}"
        " --settings {params.settings:q} --out-dir {output} --shard {wildcards.shard}"
        " --num-shards {params.num_shards} --device {params.device} --threads {threads} > {log} 2>&1"


rule merge_seeds:
    input:
        shards=expand(
            "results/{{experiment}}/seeds/shard_{shard}",
            shard=shard_range(config["seeds"]["shards"]),
        ),
        labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
    output:
        "results/{experiment}/seeds/index.json",
    log:
        "results/{experiment}/logs/merge_seeds.log",
    shell:
        "{PY} -m wsss_common.merge_shards --out {output} --suffix .npz --ids-from {input.labels}"
        " {input.shards} > {log} 2>&1"


rule eval_seeds:
    input:
        voc=voc_input,
        index="results/{experiment}/seeds/index.json",
        labels=f"results/{{experiment}}/data/labels/{config['data']['eval_split']}.json",
        train_labels=f"results/{{experiment}}/data/labels/{config['data']['train_split']}.json",
    output:
        "results/{experiment}/metrics/seed_miou.json",
    log:
        "results/{experiment}/logs/eval_seeds.log",
    params:
        root=voc_root,
        split=config["data"]["eval_split"],
        class_names=CLASS_NAMES,
        settings=as_json({k: config["seeds"][k] for k in ("sweep", "eval_threshold")}),
    shell:
        "{PY} -m bas_seed.evaluate --voc-root {params.root} --index {input.index} --labels {input.labels}"
        " --split {params.split} --class-names {params.class_names:q} --settings {params.settings:q}"
        " --train-labels {input.train_labels} --out {output} > {log} 2>&1"


rule seeds:
    input:
        expand("results/{experiment}/metrics/seed_miou.json", experiment=EXP),
