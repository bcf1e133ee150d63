# PyTorch twin of the mixed-mode demo: the same CLIP ResNet (open_clip's ModifiedResNet trunk) and FPN
# sizes, all in PyTorch, for comparing mAP and speed with configs/demo/faster_rcnn_clip_rn_jittor_fpn_demo.py.
_base_ = ['./faster_rcnn_clip_rn_jittor_fpn_demo.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='OpenCLIPResNet',
        layers={{_base_.clip_layers}},
        width={{_base_.clip_width}},
        out_indices=(0, 1, 2, 3)),
    neck=dict(type='FPN'))
