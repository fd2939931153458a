# DeepLabV2 with MSC trained from random init (no pretrained weights reachable, e.g. the CPU demo on the synthetic
# set). Deviation from the reference, on purpose: the reference freezes BN because its statistics come from the
# ImageNet/COCO caffe weights; from scratch a frozen BN is an identity with no statistics, so BN trains here
# (requires_grad True, norm_eval False) and the inputs are also divided by the ImageNet std so the first conv sees
# unit-scale values. Everything else (head, MSC loss, optimizer, schedule) is the reference recipe of
# deeplabv2_r101_msc.py.
_base_ = ['./deeplabv2_r101_msc.py']
data_preprocessor = dict(std=[57.375, 57.12, 58.395])  # BGR ImageNet std
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False))
