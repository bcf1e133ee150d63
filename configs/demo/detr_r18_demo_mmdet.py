# DETR (mmdet's PyTorch modules) on the toy shapes: the PyTorch anchor of
# configs/demo/detr_r18_demo_jittor.py.
#   make demo DEMO_CONFIG=configs/demo/detr_r18_demo_mmdet.py \
#       DEMO_DATA_ARGS="--out-dir data/demo_shapes_2k --num-train 2000"
#
# mmdet's detr_r50_8xb2-150e_coco.py (DETR's loss, Hungarian matching, AdamW 1e-4, weight decay
# 1e-4, gradient clipping 0.1) scaled to train on CPU. What it does: README "DETR" (both
# frameworks leave the "every query predicts a fixed box" plateau after ~7000 iterations).
# * 2000 training images (the demo generator's, --num-train 2000; the val split is the default
#   demo's 50 images): on the default 200, DETR fits the training set (loss 6.2 after 93 epochs)
#   while val mAP@0.5 stays at 0.000-0.004;
# * images resized to 128x128 (the demo's 256 halved: the backbone costs a quarter);
# * ResNet-18 from scratch (no pretrained weights offline) cut after its 3rd stage: C4, stride 16,
#   256 channels, an 8x8 map; BatchNorm trains, nothing frozen, and the backbone gets the full lr
#   (mmdet's x0.1 protects pretrained weights);
# * a narrow transformer: width 128, 4 heads, FFN 512, 3 encoder + 3 decoder layers, no dropout
#   (it also lets mmdet and Jittor runs from the same weights follow the same curve, dropout masks
#   differing between frameworks);
# * 25 queries: the demo images hold 1-18 objects (9.4 on average);
# * 36 epochs of 489 iterations (batch 4), lr x0.1 for the last 4 (~17600 iterations; the
#   measured runs: README "DETR").
_base_ = ['./_base_/demo_shapes.py']

num_classes = 3
num_queries = 25
embed_dims = 128
attention = dict(embed_dims=embed_dims, num_heads=4, dropout=0.0, batch_first=True)
ffn = dict(embed_dims=embed_dims, feedforward_channels=512, num_fcs=2, ffn_drop=0.0,
           act_cfg=dict(type='ReLU', inplace=True))

model = dict(
    type='DETR',
    num_queries=num_queries,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='ChannelMapper',
        in_channels=[256],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=None,
        num_outs=1),
    encoder=dict(num_layers=3, layer_cfg=dict(self_attn_cfg=attention, ffn_cfg=ffn)),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(self_attn_cfg=attention, cross_attn_cfg=attention, ffn_cfg=ffn),
        return_intermediate=True),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
    bbox_head=dict(
        type='DETRHead',
        num_classes=num_classes,
        embed_dims=embed_dims,
        loss_cls=dict(
            type='CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=num_queries))

# ---------------------------------------------------------------- data: 2000 images, at 128x128
data_root = 'data/demo_shapes_2k/'
_load = dict(type='LoadImageFromFile')
_boxes = dict(type='LoadAnnotations', with_bbox=True)
_resize = dict(type='Resize', scale=(128, 128), keep_ratio=True)
train_pipeline = [_load, _boxes, _resize, dict(type='RandomFlip', prob=0.5),
                  dict(type='PackDetInputs')]
test_pipeline = [_load, _resize, _boxes, dict(type='PackDetInputs', meta_keys=(
    'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# ---------------------------------------------------------------- schedule
max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[32], gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=1))
