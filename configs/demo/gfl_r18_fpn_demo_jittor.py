# Pure-Jittor GFL demo: configs/demo/gfl_r18_fpn_demo_mmdet.py with the type of the detector and of
# each part replaced by its Jittor name. Task modules and losses (ATSSAssigner, QualityFocalLoss,
# DistributionFocalLoss, GIoULoss) keep mmdet's names and resolve to the Jittor implementations.
#   make demo DEMO_CONFIG=configs/demo/gfl_r18_fpn_demo_jittor.py
_base_ = ['./gfl_r18_fpn_demo_mmdet.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    type='JittorGFL',
    backbone=dict(type='JittorResNet'),
    neck=dict(type='JittorFPN'),
    bbox_head=dict(type='JittorGFLHead'))
