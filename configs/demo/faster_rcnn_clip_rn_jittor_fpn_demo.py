# Mixed-mode demo (the default of `make demo`): Faster R-CNN whose backbone (CLIPResNet, UniDetector's
# CLIP ResNet) and neck (JittorFPN) run in Jittor, with mmdet's own RPNHead and StandardRoIHead in
# PyTorch. The bridge hands tensors across at the neck/head boundary; mmdet's runner, optimizer,
# data pipeline, CocoMetric and visualizer are used unchanged.
#
# Its PyTorch twin (same sizes, open_clip's ModifiedResNet + mmdet's FPN):
#   configs/demo/faster_rcnn_clip_rn_fpn_demo_torch.py
_base_ = ['./faster_rcnn_r18_fpn_demo_mmdet.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

# A small CLIP ResNet (2 Bottlenecks per stage, stem width 32) trains in minutes on a CPU.
clip_layers = [2, 2, 2, 2]
clip_width = 32
stage_channels = [clip_width * 4 * 2**i for i in range(4)]  # 128, 256, 512, 1024

model = dict(
    backbone=dict(
        _delete_=True,
        type='CLIPResNet',
        layers=clip_layers,
        width=clip_width,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False),
    neck=dict(type='JittorFPN', in_channels=stage_channels))
