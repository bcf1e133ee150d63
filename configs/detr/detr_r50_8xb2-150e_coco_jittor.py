# Pure-Jittor DETR R50 150e on COCO: mmdet's own config with only the types changed (the convention
# of jt_mm_plugins: see README "Pure-Jittor mode"). The transformer (encoder, decoder, positional
# encoding: untyped in mmdet's config) is Jittor's inside JittorDETR. An mmdet DETR checkpoint loads
# into it strictly (load_from=...). mmdet's backbone init_cfg names torchvision://resnet50, which is
# never downloaded here: point model.backbone.init_cfg.checkpoint at a local file (or set it to
# None). Not trained here: see README "DETR".
_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    type='JittorDETR',
    backbone=dict(type='JittorResNet'),
    neck=dict(type='JittorChannelMapper'),
    bbox_head=dict(type='JittorDETRHead'))
