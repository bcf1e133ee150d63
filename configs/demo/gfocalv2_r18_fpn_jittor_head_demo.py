# Mixed GFocalV2 demo: mmdet's GFL detector, ResNet-18 and FPN (PyTorch) holding the Jittor
# GFocalV2Head (GFL + DGQP with its defaults reg_topk=4, reg_channels=64, add_mean=True; bridged as
# mmdet's dense-head interface: loss / predict run in Jittor). Everything else is
# configs/demo/gfl_r18_fpn_demo_mmdet.py; the joint score is a probability, so QFL takes it as one
# (activated=True: mmdet 3's spelling, num_classes channels).
#   make demo DEMO_CONFIG=configs/demo/gfocalv2_r18_fpn_jittor_head_demo.py
_base_ = ['./gfl_r18_fpn_demo_mmdet.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(bbox_head=dict(type='GFocalV2Head', loss_cls=dict(activated=True)))
