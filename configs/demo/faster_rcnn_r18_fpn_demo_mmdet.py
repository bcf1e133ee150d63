# Faster R-CNN, ResNet-18 + FPN (64 channels), all in mmdet's PyTorch modules, on the toy-shapes
# demo dataset: the plain-mmdet reference that the Jittor demo configs are compared with.
#
#   python tools/generate_demo_dataset.py
#   python tools/train.py configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py
#   python tools/test.py configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py \
#       work_dirs/faster_rcnn_r18_fpn_demo_mmdet/epoch_4.pth --show-dir vis
#
# No pretrained weights (nothing can be downloaded here): the backbone trains from scratch, so its
# BatchNorm layers train too (norm_eval=False) and no stage is frozen.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    './_base_/demo_shapes.py',
]

num_classes = 3
channels = 64

model = dict(
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=channels, num_outs=5),
    rpn_head=dict(
        in_channels=channels,
        feat_channels=channels,
        # Objects are 10-90 px: anchors of 16-256 px over the strides 4-64.
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(in_channels=channels, num_classes=num_classes)))
