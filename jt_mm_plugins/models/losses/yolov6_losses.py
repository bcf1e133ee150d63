"""YOLOv6's detection losses (``yolov6/models/losses/loss.py``, ``yolov6/utils/figure_iou.py``) in
Jittor: their formulas differ in details from mmdet's namesakes, so they are kept apart.

* :func:`yolov6_varifocal_loss`: ``sum(BCE(p, q) * (alpha * p ** gamma * (1 - y) + q * y))`` on
  probabilities ``p`` (BCE's logs clamped at -100, as torch's ``binary_cross_entropy``).
* :func:`yolov6_giou_loss`: ``1 - GIoU`` per box pair, YOLOv6's ``IOUloss`` with ``eps`` 1e-10 added
  to the heights, the union and the enclosing area (mmdet's ``giou_loss`` places its eps
  elsewhere).
* :func:`yolov6_siou_loss`: ``1 - SIoU`` (`SIoU <https://arxiv.org/abs/2205.12740>`_), YOLOv6's
  ``IOUloss(iou_type='siou')``: IoU minus half the distance cost (shaped by the angle cost) and
  the shape cost, with the same ``eps`` placement (heights, union, centre offsets).
  :func:`yolov6_iou_loss` picks one of the two by YOLOv6's ``iou_type`` name.
* :func:`yolov6_dfl`: the distribution focal loss of YOLOv6's ``BboxLoss._df_loss``: cross
  entropy to the two bins around each target distance, linearly weighted, mean over the 4 sides.
"""
import math

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


def _iou_terms(box1: jt.Var, box2: jt.Var, eps: float):
    """The parts YOLOv6's ``IOUloss`` computes for every ``iou_type``: the corners, IoU, the
    widths / heights (``eps`` added to the heights), the union and the enclosing box's size."""
    b1 = [box1[:, i:i + 1] for i in range(4)]
    b2 = [box2[:, i:i + 1] for i in range(4)]
    inter = (jt.minimum(b1[2], b2[2]) - jt.maximum(b1[0], b2[0])).clamp(min_v=0) * \
        (jt.minimum(b1[3], b2[3]) - jt.maximum(b1[1], b2[1])).clamp(min_v=0)
    w1, h1 = b1[2] - b1[0], b1[3] - b1[1] + eps
    w2, h2 = b2[2] - b2[0], b2[3] - b2[1] + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    cw = jt.maximum(b1[2], b2[2]) - jt.minimum(b1[0], b2[0])
    ch = jt.maximum(b1[3], b2[3]) - jt.minimum(b1[1], b2[1])
    return b1, b2, inter / union, (w1, h1, w2, h2), union, (cw, ch)


def yolov6_giou_loss(box1: jt.Var, box2: jt.Var, eps: float = 1e-10) -> jt.Var:
    """``1 - GIoU`` of (n, 4) xyxy pairs, shape (n, 1)."""
    _, _, iou, _, union, (cw, ch) = _iou_terms(box1, box2, eps)
    c_area = cw * ch + eps
    return 1.0 - (iou - (c_area - union) / c_area)


def yolov6_siou_loss(box1: jt.Var, box2: jt.Var, eps: float = 1e-10) -> jt.Var:
    """``1 - SIoU`` of (n, 4) xyxy pairs (``box1`` predicted, ``box2`` target), shape (n, 1).

    Angle cost ``cos(2 arcsin(s) - pi / 2)`` with ``s`` the sine of the centre offset's angle to
    the nearer axis (``|dy| / d`` when ``|dx| / d`` exceeds ``sqrt(2) / 2``, else ``|dx| / d``;
    ``dx``, ``dy`` the centre offsets plus ``eps``, ``d`` their length); distance cost ``2 - exp((angle - 2) (dx / cw)^2) - exp((angle - 2)
    (dy / ch)^2)``; shape cost ``(1 - exp(-|w1 - w2| / max(w1, w2)))^4`` plus the same for the
    heights; ``SIoU = IoU - (distance + shape) / 2``."""
    b1, b2, iou, (w1, h1, w2, h2), _, (cw, ch) = _iou_terms(box1, box2, eps)
    s_cw = (b2[0] + b2[2] - b1[0] - b1[2]) * 0.5 + eps
    s_ch = (b2[1] + b2[3] - b1[1] - b1[3]) * 0.5 + eps
    sigma = (s_cw * s_cw + s_ch * s_ch).pow(0.5)
    sin_alpha_1, sin_alpha_2 = s_cw.abs() / sigma, s_ch.abs() / sigma
    sin_alpha = jt.ternary(sin_alpha_1 > math.sqrt(2) / 2, sin_alpha_2, sin_alpha_1)
    angle_cost = jt.cos(jt.asin(sin_alpha) * 2 - math.pi / 2)
    gamma = angle_cost - 2
    distance_cost = 2 - jt.exp(gamma * (s_cw / cw).sqr()) - jt.exp(gamma * (s_ch / ch).sqr())
    omega_w = (w1 - w2).abs() / jt.maximum(w1, w2)
    omega_h = (h1 - h2).abs() / jt.maximum(h1, h2)
    shape_cost = (1 - jt.exp(-omega_w)).pow(4) + (1 - jt.exp(-omega_h)).pow(4)
    return 1.0 - (iou - 0.5 * (distance_cost + shape_cost))


IOU_LOSSES = {'giou': yolov6_giou_loss, 'siou': yolov6_siou_loss}


def yolov6_iou_loss(box1: jt.Var, box2: jt.Var, iou_type: str = 'giou',
                    eps: float = 1e-10) -> jt.Var:
    """YOLOv6's ``IOUloss(box_format='xyxy', iou_type=iou_type, eps=eps)`` (``'giou'`` or
    ``'siou'``; YOLOv6's ``'ciou'`` / ``'diou'`` are not built)."""
    if iou_type not in IOU_LOSSES:
        raise NotImplementedError(f'yolov6_iou_loss: iou_type={iou_type!r}; built: '
                                  f'{sorted(IOU_LOSSES)}')
    return IOU_LOSSES[iou_type](box1, box2, eps)


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
