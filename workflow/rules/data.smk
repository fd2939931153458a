# Dataset: the embedded synthetic VOC-layout set (when data.root is null) and the per-split image-label caches.


rule make_synthetic_voc:
    output:
        directory("results/{experiment}/data/VOC2012"),
    log:
        "results/{experiment}/logs/make_synthetic_voc.log",
    threads: 2
    params:
        synthetic=as_json(config["data"]["synthetic"]),
        class_names=CLASS_NAMES,
    shell:
        "{PY} -m wsss_common.synthetic --out {output} --settings {params.synthetic:q}"
        " --class-names {params.class_names:q} --workers {threads} > {log} 2>&1"


rule image_labels:
    input:
        voc=voc_input,
    output:
        "results/{experiment}/data/labels/{split}.json",
    log:
        "results/{experiment}/logs/image_labels_{split}.log",
    params:
        root=voc_root,
        class_names=CLASS_NAMES,
    shell:
        "{PY} -m wsss_common.labels --voc-root {params.root} --split {wildcards.split}"
        " --class-names {params.class_names:q} --out {output} > {log} 2>&1"
