# Pure-Jittor GFL R50-FPN 1x on COCO: mmdet's own config with only the types changed (the convention
# of jt_mm_plugins: see README "Pure-Jittor mode"). An mmdet GFL checkpoint loads into it strictly
# (load_from=...). mmdet's backbone init_cfg names torchvision://resnet50, which is never downloaded
# here: point model.backbone.init_cfg.checkpoint at a local file (or set it to None).
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    type='JittorGFL',
    backbone=dict(type='JittorResNet'),
    neck=dict(type='JittorFPN'),
    bbox_head=dict(type='JittorGFLHead'))
