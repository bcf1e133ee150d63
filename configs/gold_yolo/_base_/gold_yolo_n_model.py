# Gold-YOLO-N's model (configs/gold_yolo-n.py of the original): the S model with width 0.25, the
# N neck settings and the original N's loss: SIoU with 4 plain distances (use_dfl=False,
# reg_max=0), no DFL (the original sets reg_max 16 only for its self-distillation step, not built).
_base_ = ['./gold_yolo_s_model.py']

model = dict(
    backbone=dict(width_multiple=0.25),
    neck=dict(width_multiple=0.25,
              extra_cfg=dict(fusion_in=480, ppa_in=352, embed_dim_p=96, embed_dim_n=352,
                             fusion_act=dict(type='ReLU'), trans_channels=[64, 32, 64, 128])),
    bbox_head=dict(in_channels=[32, 64, 128], use_dfl=False, reg_max=0, iou_type='siou'))
