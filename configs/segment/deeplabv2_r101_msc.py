# DeepLabV2-ResNet-101 with multi-scale inputs (MSC), the model and recipe of kazuto1011/deeplab-pytorch
# (configs/voc12.yaml, DeepLabV2_ResNet101_MSC) that the WSSS papers (AdvCAM, ReCAM, AMN) train on pseudo masks.
# `python -m segment.train` loads this file and fills in what depends on the workflow config section `segment`:
# data paths and class names (num_classes), backbone depth/width, crop size, train scales, batch size, gradient
# accumulation, iterations, base lr, checkpoint interval, seed, init weights and work_dir. Values below marked
# "filled in" are placeholders of the right type that the stage always overwrites.
custom_imports = dict(imports=['segment.registry_modules'], allow_failed_imports=False)

# caffe/MSRA weights expect BGR input minus the ImageNet BGR mean, no std division (deeplab-pytorch MEAN.B/G/R).
# Training images arrive already padded to the crop by the pipeline (DeepLabPadToCrop, before crop and flip, as the
# reference); the padding here (pad_val 0 after mean subtraction = the mean colour, labels 255) is then a no-op;
# size = the crop (filled in).
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[104.008, 116.669, 122.675],
    std=[1.0, 1.0, 1.0],
    bgr_to_rgb=False,
    pad_val=0,
    seg_pad_val=255,
    size=(321, 321))

model = dict(
    type='MultiScaleInputEncoderDecoder',
    data_preprocessor=data_preprocessor,
    msc_scales=(0.5, 0.75),          # MSC pyramids of deeplab-pytorch; losses on 1x, 0.5x, 0.75x and their max
    msc_at_test=True,                # test on the max-fused logits, as the reference
    label_resize='nearest_to_logits',  # CE at each output's resolution on nearest-resized labels (reference)
    backbone=dict(
        type='DeepLabResNet',
        depth=101,                   # filled in (segment.backbone_depth)
        base_channels=64,            # filled in (segment.backbone_base_channels)
        stem_channels=64,            # filled in (= base_channels)
        style='caffe',               # stride on the first 1x1 conv of a bottleneck, as MSRA ResNet
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),      # output stride 8, dilation 2 in res4 and 4 in res5
        contract_dilation=False,     # DeepLab dilates every block of res4/res5, including the first
        out_indices=(3, ),
        maxpool_ceil_mode=True,      # MaxPool2d(3, 2, 1, ceil_mode=True) of the original
        norm_cfg=dict(type='BN', requires_grad=False),  # BN frozen: statistics and affine from the init weights
        norm_eval=True,
        zero_init_residual=False),
    decode_head=dict(
        type='DeepLabV2Head',
        in_channels=2048,            # filled in (last stage width of the configured backbone)
        in_index=0,
        dilations=(6, 12, 18, 24),
        num_classes=21,              # filled in (len(data.class_names))
        dropout_ratio=0.0,
        ignore_index=255,
        align_corners=False,
        init_cfg=dict(type='Normal', std=0.01, bias=0.0, override=dict(name='aspp')),
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         avg_non_ignore=True)),  # mean over non-ignored pixels = nn.CrossEntropyLoss(ignore_index=255)
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))     # the whole image, no crop or resize

crop_size = (321, 321)               # filled in (segment.crop_size)
# deeplab-pytorch's _BaseDataset._augmentation, in its order: scale, pad, crop, flip (segment/transforms.py).
train_pipeline = [
    # BGR, float32 as the reference (cv2.imread(...).astype(np.float32)): the bilinear resize is not re-quantised
    # to uint8 and the padding below is exactly the mean
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations'),    # the pseudo mask (palette indices)
    # a scale factor drawn with random.choice from a discrete set (SCALES), size int(h * s), int(w * s), image
    # cv2 INTER_LINEAR, label PIL NEAREST; the candidates are filled in from segment.train_scales
    dict(type='DeepLabRandomScale', scales=(0.5, 0.75, 1.0, 1.25, 1.5)),
    # pad bottom/right up to the crop: image with the mean (filled in from data_preprocessor.mean), label 255
    dict(type='DeepLabPadToCrop', crop_size=crop_size, img_pad=data_preprocessor['mean'], seg_pad=255),
    # random crop: offset uniform in [0, size - crop] per side, as random.randint(0, h - crop_size)
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=5,                    # filled in (segment.batch_size)
    num_workers=2,                   # filled in (segment.num_workers)
    persistent_workers=False,
    # mmengine's InfiniteSampler stream, with each sample's augmentation seeded by its stream position so that a
    # resumed run continues exactly like an uninterrupted one (segment/datasets.py)
    sampler=dict(type='PositionSeededInfiniteSampler', shuffle=True),
    dataset=dict(type='PseudoMaskSegDataset', index_file='', image_dir='', metainfo=dict(classes=()),
                 augment_seed=0,     # filled in (segment.seed)
                 pipeline=train_pipeline))

# SGD as deeplab-pytorch: lr 2.5e-4 for the backbone convs, 10x for the ASPP weights, 20x and no decay for the
# ASPP biases (frozen BN parameters get no gradient). accumulative_counts: ITER_SIZE 2 (filled in).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2.5e-4, momentum=0.9, weight_decay=5e-4),
    accumulative_counts=2,
    paramwise_cfg=dict(custom_keys={
        'decode_head.aspp': dict(lr_mult=10.0),
        **{f'decode_head.aspp.{i}.bias': dict(lr_mult=20.0, decay_mult=0.0) for i in range(4)},
    }))

# poly 0.9 over the whole run, the lr changed every LR_DECAY=10 optimizer steps; end and step_size are in runner
# iterations (batches) = optimizer steps x accumulative_counts (filled in).
param_scheduler = [dict(type='StepwisePolyLR', power=0.9, step_size=20, begin=0, end=40000, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=10 ** 9)  # no validation while training
val_cfg = None
test_cfg = None

default_scope = 'mmseg'
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000, max_keep_ckpts=2,
                    save_last=True),  # interval filled in (segment.checkpoint_interval x accumulative_counts)
    sampler_seed=dict(type='DistSamplerSeedHook'))
randomness = dict(seed=0)            # filled in (segment.seed)
load_from = None                     # filled in: the converted init weights, or None to train from scratch
resume = False
