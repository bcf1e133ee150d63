# Pure-Jittor GFocalV2 demo: configs/demo/gfocalv2_r18_fpn_jittor_head_demo.py with the detector,
# backbone and neck in Jittor too (JittorGFL, JittorResNet, JittorFPN).
#   make demo DEMO_CONFIG=configs/demo/gfocalv2_r18_fpn_demo_jittor.py
_base_ = ['./gfocalv2_r18_fpn_jittor_head_demo.py']

model = dict(
    type='JittorGFL',
    backbone=dict(type='JittorResNet'),
    neck=dict(type='JittorFPN'))
