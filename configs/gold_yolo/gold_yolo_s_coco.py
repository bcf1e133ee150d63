# Gold-YOLO-S on COCO at 640 (huawei-noah Efficient-Computing configs/gold_yolo-s.py; ../shared/
# specs/seed-systems.md section 3), every part in Jittor: EfficientRep (fuse_P2, SimCSPSPPF),
# RepGDNeck, EffiDeHead (DFL reg_max 16, TAL, varifocal + GIoU + DFL). The original's solver: SGD
# lr 0.01 (nesterov, momentum 0.937, weight decay 5e-4 on conv weights only), 3 warm-up epochs,
# cosine to 0.01 x lr over 300 epochs, batch 256 over 8 GPUs (32 per GPU); evaluation with score
# threshold 0.03 and NMS IoU 0.65 (mmdet's class-aware NMS here, not YOLOv6's).
# Differences, stated: the neck's SyncBN is BN here (one process; Jittor parts do not synchronise
# batch statistics, see README "Distributed training"); YOLOv6's mosaic / HSV / affine
# augmentations and its letterbox are not reproduced (resize keeping the ratio, flip; the data
# preprocessor pads every batch to a multiple of 32, which the 32-stride network needs); no
# self-distillation. atss_warmup_epoch=0 as the original's configs (TAL from the first epoch); a
# positive value assigns by YOLOv6's ATSS for that many epochs (SetEpochHook passes the epoch).
# Deploy: tools/reparameterize.py CONFIG CKPT OUT, then this config with
# --cfg-options model.backbone.deploy=True model.neck.deploy=True.
_base_ = ['./_base_/gold_yolo_coco_640.py', './_base_/gold_yolo_s_model.py']
