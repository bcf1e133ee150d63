# NanoDet-Plus-m's model (RangiLyu/nanodet config/nanodet-plus-m_320.yml; ../shared/specs/
# seed-systems.md section 4), every part in Jittor: ShuffleNetV2 1.0x (LeakyReLU, stages 2-4),
# GhostPAN (96 channels, depthwise k5, one extra level), NanoDetPlusHead (strides 8-64, reg_max 7)
# and, in training only, the aux GhostPAN + SimpleConvHead (192 channels, 4 convs, GN(32)) of the
# assign guidance module, detached from epoch 10 (needs NanoDetPlusEpochHook in custom_hooks).
# COCO's 80 classes; configs that inherit it set the heads' num_classes.
custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    type='NanoDetPlus',
    # NanoDet normalises BGR images with these
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[103.53, 116.28, 123.675],
        std=[57.375, 57.12, 58.395],
        bgr_to_rgb=False,
        pad_size_divisor=32),
    backbone=dict(
        type='ShuffleNetV2', model_size='1.0x', out_stages=(2, 3, 4), activation='LeakyReLU'),
    neck=dict(
        type='GhostPAN',
        in_channels=[116, 232, 464],
        out_channels=96,
        use_depthwise=True,
        kernel_size=5,
        expand=1,
        num_blocks=1,
        use_res=False,
        num_extra_level=1,
        upsample_cfg=dict(scale_factor=2, mode='bilinear'),
        norm_cfg=dict(type='BN'),
        activation='LeakyReLU'),
    bbox_head=dict(
        type='NanoDetPlusHead',
        num_classes=80,
        in_channels=96,
        feat_channels=96,
        stacked_convs=2,
        kernel_size=5,
        strides=[8, 16, 32, 64],
        conv_type='DWConv',
        norm_cfg=dict(type='BN'),
        reg_max=7,
        activation='LeakyReLU',
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25)),
    aux_head=dict(
        type='SimpleConvHead',
        num_classes=80,
        input_channel=192,
        feat_channels=192,
        stacked_convs=4,
        strides=[8, 16, 32, 64],
        activation='LeakyReLU',
        reg_max=7),
    detach_epoch=10,
    train_cfg=dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13, iou_weight=3.0)),
    test_cfg=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))
