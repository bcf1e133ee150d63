# Pure-Jittor DETR demo: configs/demo/detr_r18_demo_mmdet.py (the model, data and schedule) with
# the type of the detector and of each part replaced by its Jittor name (the transformer, untyped
# there, is Jittor's inside JittorDETR). Task modules and losses keep mmdet's names and resolve to
# the Jittor implementations.
#   make demo DEMO_CONFIG=configs/demo/detr_r18_demo_jittor.py \
#       DEMO_DATA_ARGS="--out-dir data/demo_shapes_2k --num-train 2000"
# What it does on the demo data, against mmdet's run from the same weights: README "DETR".
_base_ = ['./detr_r18_demo_mmdet.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    type='JittorDETR',
    backbone=dict(type='JittorResNet'),
    neck=dict(type='JittorChannelMapper'),
    bbox_head=dict(type='JittorDETRHead'))
