"""Stage 4: DeepLabV2 (caffe ResNet, summed ASPP) trained in mmsegmentation on the IRN pseudo masks.

Importing ``segment.registry_modules`` registers this stage's mmseg/mmengine modules (head, backbone, multi-scale-input
segmentor, pseudo-mask dataset, stepwise poly schedule); the mmseg config files under ``configs/segment/`` import it
through ``custom_imports``. Steps: ``python -m segment.train`` and ``python -m segment.predict``.
"""
