# Gold-YOLO-N on COCO at 640 (configs/gold_yolo-n.py of the original): gold_yolo_s_coco.py's data
# and solver with the N model (_base_/gold_yolo_n_model.py: width 0.25, the N neck, SIoU without
# DFL) and the original N's lr0 0.02 (S: 0.01).
_base_ = ['./_base_/gold_yolo_coco_640.py', './_base_/gold_yolo_n_model.py']

optim_wrapper = dict(optimizer=dict(lr=0.02))
