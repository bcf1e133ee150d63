# Pure-Jittor Faster R-CNN R50-FPN 1x on COCO: mmdet's own config with only the types changed
# (the convention of jt_mm_plugins: see README "Pure-Jittor mode"). An mmdet Faster R-CNN checkpoint
# loads into it strictly (load_from=...).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

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
