# Gold-YOLO-N on COCO at 640 (configs/gold_yolo-n.py of the original): gold_yolo_s_coco.py's data
# and solver with the N model (_base_/gold_yolo_n_model.py: width 0.25, the N neck; trained with
# S's GIoU + DFL loss, a stated difference).
_base_ = ['./_base_/gold_yolo_coco_640.py', './_base_/gold_yolo_n_model.py']
