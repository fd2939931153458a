# Single-scale DeepLabV2 from random init with trainable BN: deeplabv2_msc_scratch.py without the 0.5x/0.75x input
# pyramid (~1.8x cheaper per iteration). Not the reference recipe; for CPU-only demos and tests.
_base_ = ['./deeplabv2_msc_scratch.py']
model = dict(msc_scales=(), msc_at_test=False)
