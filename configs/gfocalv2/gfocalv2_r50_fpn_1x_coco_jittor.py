# GFocalV2 R50-FPN 1x on COCO, pure Jittor: configs/gfocalv2/gfocalv2_r50_fpn_1x_coco.py with the
# detector, backbone and neck in Jittor too (JittorGFL, JittorResNet, JittorFPN); nothing else
# differs (tests/test_configs.py checks).
_base_ = './gfocalv2_r50_fpn_1x_coco.py'

model = dict(
    type='JittorGFL',
    backbone=dict(type='JittorResNet'),
    neck=dict(type='JittorFPN'))
