# GFocalV2 R50-FPN 1x on COCO, mixed form: mmdet's GFL detector, ResNet-50 and FPN (PyTorch) holding
# the Jittor GFocalV2Head (GFL + DGQP). The original's settings (implus/GFocalV2
# configs/gfocal/gfocal_r50_fpn_1x.py; ../shared/specs/seed-systems.md §2) are mmdet's GFL config
# (ATSS top-k 9, one anchor of scale 8 per location at strides 8-128, FPN P3-P7 'on_output', R50
# with stage 1 frozen and BN eval, QFL / DFL 0.25 / GIoU 2.0, nms_pre 1000, score_thr 0.05, NMS 0.6,
# 100 per image, SGD lr 0.01 momentum 0.9 wd 1e-4, 12 epochs with steps at 8 and 11, 2 images per
# GPU, 1333x800) plus the head's DGQP (reg_topk 4, reg_channels 64, add_mean) and the original's
# QualityFocalLoss(use_sigmoid=False): QFL on the joint probability, and num_classes + 1 = 81
# classification channels (the extra one only ever learns 0 and is dropped from the detections), so
# a checkpoint of the original loads by name.
# mmdet's backbone init_cfg names torchvision://resnet50, which is never downloaded here: point
# model.backbone.init_cfg.checkpoint at a local file (or set it to None).
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        type='GFocalV2Head',
        reg_topk=4,
        reg_channels=64,
        add_mean=True,
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=False, beta=2.0, loss_weight=1.0)))
