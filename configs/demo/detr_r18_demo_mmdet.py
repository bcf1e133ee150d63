# DETR (mmdet's PyTorch modules), ResNet-18 + ChannelMapper, a 128-wide 3+3-layer transformer and
# 30 queries, on the toy-shapes demo dataset: the PyTorch anchor of
# configs/demo/detr_r18_demo_jittor.py.
#   make demo DEMO_CONFIG=configs/demo/detr_r18_demo_mmdet.py
#
# mmdet's detr_r50_8xb2-150e_coco.py scaled to the demo (ResNet-18 from scratch, so BatchNorm trains
# and no stage is frozen), with DETR's optimiser (AdamW 1e-4, weight decay 1e-4, gradient clipping
# 0.1, backbone lr x0.1). DETR needs long schedules: the demo base's 4 epochs do not make it learn
# (not measured here; see README "DETR"); train longer with --cfg-options train_cfg.max_epochs=...
_base_ = ['./_base_/demo_shapes.py']

num_classes = 3
embed_dims = 128
attention = dict(embed_dims=embed_dims, num_heads=4, dropout=0.1, batch_first=True)
ffn = dict(embed_dims=embed_dims, feedforward_channels=512, num_fcs=2, ffn_drop=0.1,
           act_cfg=dict(type='ReLU', inplace=True))

model = dict(
    type='DETR',
    num_queries=30,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='ChannelMapper',
        in_channels=[512],
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
    test_cfg=dict(max_per_img=30))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}))
