# Stage 0, only when pretraining.enabled (the demo): a stand-in for ImageNet weights, which cannot be downloaded
# offline. A second generated set (data.synthetic with pretraining.synthetic over it: other images) -> its image
# labels -> the CAM recipe bas.cam trained on them -> its ResNet as a torchvision-format file, which train_bas,
# train_cam and train_irn then take where they would take imagenet_weights (common.smk: imagenet_input).


rule make_pretraining_voc:
    output:
        directory("results/{experiment}/pretraining/data/VOC2012"),
    log:
        "results/{experiment}/logs/make_pretraining_voc.log",
    threads: 2
    params:
        synthetic=lambda wildcards: as_json(pretraining_synthetic(config)),
        class_names=CLASS_NAMES,
    shell:
        "{PY} -m wsss_common.synthetic --out {output} --settings {params.synthetic:q}"
        " --class-names {params.class_names:q} --workers {threads} > {log} 2>&1"


rule pretraining_labels:
    input:
        voc="results/{experiment}/pretraining/data/VOC2012",
    output:
        f"results/{{experiment}}/pretraining/data/labels/{config['data']['train_split']}.json",
    log:
        "results/{experiment}/logs/pretraining_labels.log",
    params:
        split=config["data"]["train_split"],
        class_names=CLASS_NAMES,
    shell:
        "{PY} -m wsss_common.labels --voc-root {input.voc} --split {params.split}"
        " --class-names {params.class_names:q} --out {output} > {log} 2>&1"


# the CAM training step of train_cam on the pretraining set, from random init
use rule train_cam as pretrain_cam with:
    input:
        voc="results/{experiment}/pretraining/data/VOC2012",
        labels=f"results/{{experiment}}/pretraining/data/labels/{config['data']['train_split']}.json",
        weights=[],  # random init: the pretraining is what makes the stand-in
    output:
        model="results/{experiment}/pretraining/cam_model.pt",
        loss_log="results/{experiment}/pretraining/cam_loss_log.jsonl",
    log:
        "results/{experiment}/logs/pretrain_cam.log",
    benchmark:
        "results/{experiment}/benchmarks/pretrain_cam.tsv"
    params:
        method="cam",
        root=lambda wildcards, input: input.voc,
        settings=as_json(seed_net_settings("cam")),
        device=config["device"],
        seed=config["pretraining"]["seed"],
        weights=imagenet_option,
        launch=torchrun_launch,


rule export_pretrained_backbone:
    input:
        "results/{experiment}/pretraining/cam_model.pt",
    output:
        f"results/{{experiment}}/pretraining/pretrained_resnet{config['bas']['depth']}.pth",
    log:
        "results/{experiment}/logs/export_pretrained_backbone.log",
    shell:
        "{PY} -m bas_seed.export_backbone --model {input} --out {output} > {log} 2>&1"
