# Pure-Jittor demo: configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py with the type of the detector and of
# each part replaced by its Jittor name. Task modules (assigners, samplers, coders, losses, NMS) keep
# mmdet's names and resolve to the Jittor implementations inside the Jittor detector.
#   make demo DEMO_CONFIG=configs/demo/faster_rcnn_r18_fpn_demo_jittor.py
_base_ = ['./faster_rcnn_r18_fpn_demo_mmdet.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    type='JittorFasterRCNN',
    backbone=dict(type='JittorResNet'),
    neck=dict(type='JittorFPN'),
    rpn_head=dict(type='JittorRPNHead'),
    roi_head=dict(
        type='JittorStandardRoIHead',
        bbox_roi_extractor=dict(type='JittorSingleRoIExtractor'),
        bbox_head=dict(type='JittorShared2FCBBoxHead')))
