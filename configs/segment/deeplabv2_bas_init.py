# Single-scale DeepLabV2 whose backbone starts from the ResNet of the BAS network the DAG trained
# (segment.init.from_bas: true; the CPU demo, where no ImageNet/COCO weights can be had). Not the reference recipe.
# The BAS net is a torchvision ResNet: RGB input normalised by the ImageNet mean and std (bas_seed/data.py), the
# stride on the 3x3 conv (style 'pytorch'), the stem max-pool without ceil mode, and base width 64
# (segment.backbone_base_channels must be 64, backbone_depth = bas.depth).
_base_ = ['./deeplabv2_r101.py']
data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
model = dict(
    data_preprocessor=data_preprocessor,
    # BN frozen as the reference's (its statistics are the BAS network's, from these images). Dilations: the BAS
    # ResNet has layer3 at stride 2 and layer4 at stride 1 undilated (output stride 16), so at output stride 8 each
    # keeps its receptive field with dilation 2 (the reference's 2, 4 assume ImageNet's stride-2 layer4)
    backbone=dict(style='pytorch', maxpool_ceil_mode=False, dilations=(1, 1, 2, 2)))
