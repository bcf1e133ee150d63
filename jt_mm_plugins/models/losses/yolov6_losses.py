"""YOLOv6's detection losses (``yolov6/models/losses/loss.py``, ``yolov6/utils/figure_iou.py``) in
Jittor: their formulas differ in details from mmdet's namesakes, so they are kept apart.

* :func:`yolov6_varifocal_loss`: ``sum(BCE(p, q) * (alpha * p ** gamma * (1 - y) + q * y))`` on
  probabilities ``p`` (BCE's logs clamped at -100, as torch's ``binary_cross_entropy``).
* :func:`yolov6_giou_loss`: ``1 - GIoU`` per box pair, YOLOv6's ``IOUloss`` with ``eps`` 1e-10 added
  to the heights, the union and the enclosing area (mmdet's ``giou_loss`` places its eps
  elsewhere).
* :func:`yolov6_dfl`: the distribution focal loss of YOLOv6's ``BboxLoss._df_loss``: cross
  entropy to the two bins around each target distance, linearly weighted, mean over the 4 sides.
"""
from jt_mm_plugins.runtime import jt


def yolov6_varifocal_loss(pred_score: jt.Var, gt_score: jt.Var, label: jt.Var,
                          alpha: float = 0.75, gamma: float = 2.0) -> jt.Var:
    """Summed varifocal loss (probabilities ``pred_score``, soft targets ``gt_score``, one-hot
    ``label``; all the same shape)."""
    weight = alpha * pred_score.pow(gamma) * (1 - label) + gt_score * label
    log_p = jt.maximum(jt.log(pred_score), -100.0)
    log_1p = jt.maximum(jt.log(1 - pred_score), -100.0)
    bce = -(gt_score * log_p + (1 - gt_score) * log_1p)
    return (bce * weight).sum()


def yolov6_giou_loss(box1: jt.Var, box2: jt.Var, eps: float = 1e-10) -> jt.Var:
    """``1 - GIoU`` of (n, 4) xyxy pairs, shape (n, 1)."""
    b1_x1, b1_y1, b1_x2, b1_y2 = (box1[:, i:i + 1] for i in range(4))
    b2_x1, b2_y1, b2_x2, b2_y2 = (box2[:, i:i + 1] for i in range(4))
    inter = (jt.minimum(b1_x2, b2_x2) - jt.maximum(b1_x1, b2_x1)).clamp(min_v=0) * \
        (jt.minimum(b1_y2, b2_y2) - jt.maximum(b1_y1, b2_y1)).clamp(min_v=0)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = jt.maximum(b1_x2, b2_x2) - jt.minimum(b1_x1, b2_x1)
    ch = jt.maximum(b1_y2, b2_y2) - jt.minimum(b1_y1, b2_y1)
    c_area = cw * ch + eps
    return 1.0 - (iou - (c_area - union) / c_area)


def yolov6_dfl(pred_dist: jt.Var, target: jt.Var) -> jt.Var:
    """(n, 4, reg_max + 1) logits, (n, 4) target distances in [0, reg_max) -> (n, 1)."""
    left = target.int64()
    weight_left = (left + 1).astype(target.dtype) - target
    weight_right = 1 - weight_left
    log_prob = jt.nn.log_softmax(pred_dist, dim=-1)
    n, sides, bins = pred_dist.shape
    flat = log_prob.reshape(n * sides, bins)
    rows = jt.arange(n * sides)
    loss_left = -flat[rows, left.reshape(-1)].reshape(n, sides) * weight_left
    loss_right = -flat[rows, (left + 1).reshape(-1)].reshape(n, sides) * weight_right
    return (loss_left + loss_right).mean(dim=-1, keepdims=True)
