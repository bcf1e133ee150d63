# Gold-YOLO-N's model (configs/gold_yolo-n.py of the original): the S model with width 0.25 and the
# N neck settings. The original N uses SIoU with reg_max 0 (no DFL) for its first training step;
# EffiDeHead builds GIoU + DFL only, so N trains with S's loss here (stated difference).
_base_ = ['./gold_yolo_s_model.py']

model = dict(
    backbone=dict(width_multiple=0.25),
    neck=dict(width_multiple=0.25,
              extra_cfg=dict(fusion_in=480, ppa_in=352, embed_dim_p=96, embed_dim_n=352,
                             trans_channels=[64, 32, 64, 128])),
    bbox_head=dict(in_channels=[32, 64, 128]))
