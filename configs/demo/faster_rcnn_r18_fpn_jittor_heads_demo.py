# Mixed mode, the other way round from the default demo: mmdet's FasterRCNN with mmdet's ResNet-18
# and FPN in PyTorch, and the RPN and RoI heads in Jittor. mmdet's detector calls the bridged heads
# through mmdet's own head interface (jt_mm_plugins/bridge/heads.py); the RoI head's children keep
# mmdet's names and resolve to their Jittor twins inside it.
#   make demo DEMO_CONFIG=configs/demo/faster_rcnn_r18_fpn_jittor_heads_demo.py
_base_ = ['./faster_rcnn_r18_fpn_demo_mmdet.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    rpn_head=dict(type='JittorRPNHead'),
    roi_head=dict(type='JittorStandardRoIHead'))
