# Mixed GFL demo: mmdet's GFL detector, ResNet-18 and FPN (PyTorch) holding the Jittor GFL head
# (bridged as mmdet's dense-head interface: loss / predict run in Jittor).
#   make demo DEMO_CONFIG=configs/demo/gfl_r18_fpn_jittor_head_demo.py
_base_ = ['./gfl_r18_fpn_demo_mmdet.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(bbox_head=dict(type='JittorGFLHead'))
