# GFL (Generalized Focal Loss: QFL + DFL + GIoU, ATSS assignment), ResNet-18 + FPN (64 channels), all
# in mmdet's PyTorch modules, on the toy-shapes demo dataset: the PyTorch anchor that the Jittor
# one-stage demo configs are compared with.
#   make demo DEMO_CONFIG=configs/demo/gfl_r18_fpn_demo_mmdet.py
#
# mmdet's gfl_r50_fpn_1x_coco.py model scaled to the demo: ResNet-18 from scratch (no pretrained
# weights here, so BatchNorm trains and no stage is frozen), 64 channels, two stacked convs per tower,
# and pyramid levels at strides 4-64 with anchors of 16-256 px (the objects are 10-90 px).
_base_ = ['./_base_/demo_shapes.py']

num_classes = 3
channels = 64

model = dict(
    type='GFL',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='FPN',
        in_channels=[64, 128, 256, 512],
        out_channels=channels,
        start_level=0,
        add_extra_convs='on_output',
        num_outs=5),
    bbox_head=dict(
        type='GFLHead',
        num_classes=num_classes,
        in_channels=channels,
        stacked_convs=2,
        feat_channels=channels,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=4,
            scales_per_octave=1,
            strides=[4, 8, 16, 32, 64]),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        reg_max=16,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(type='ATSSAssigner', topk=9),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))

# mmdet's GFL learning rate (0.01 for 16 images) is kept for 4: the demo's 0.02 diverges with
# GroupNorm heads from scratch less predictably than the Faster R-CNN demo.
optim_wrapper = dict(optimizer=dict(lr=0.01))
