# Single-scale DeepLabV2-ResNet-101: the MSC recipe of deeplabv2_r101_msc.py without the 0.5x/0.75x input
# pyramid (one forward pass, one loss on the 1x logits; ~1.8x cheaper). Not the reference recipe: its numbers are
# not directly comparable with the papers'; use it where compute is short (the CPU demo).
_base_ = ['./deeplabv2_r101_msc.py']
model = dict(msc_scales=(), msc_at_test=False)
