# Gold-YOLO-N (every part in Jittor: EfficientRep, RepGDNeck, EffiDeHead with TAL and N's SIoU loss
# without DFL) on the toy-shapes
# demo dataset, the demo's schedule (4 epochs, SGD 0.02, batch 4, 256 px) from random weights.
#   make demo DEMO_CONFIG=configs/demo/gold_yolo_n_demo_jittor.py
# The model is configs/gold_yolo/gold_yolo_n_coco.py's with 3 classes and YOLOv6's input scaling
# (pixels / 255); the batch is padded to a multiple of 32.
_base_ = ['./_base_/demo_shapes.py', '../gold_yolo/_base_/gold_yolo_n_model.py']

model = dict(bbox_head=dict(num_classes=3),
             test_cfg=dict(score_thr=0.03, nms_pre=-1, nms=dict(type='nms', iou_threshold=0.65),
                           max_per_img=100))
# the epoch reaches EffiDeHead (ATSS warm-up while epoch < atss_warmup_epoch; 0 here)
custom_hooks = [dict(type='SetEpochHook')]
