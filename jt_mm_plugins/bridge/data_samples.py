"""mmdet's ``DetDataSample`` / ``InstanceData`` <-> the plain dicts the Jittor detection modules take.

Jittor modules speak lists of dicts (``{'bboxes', 'labels'}`` per image, image metas as dicts); the
bridged detector and the bridged heads translate at the boundary with these helpers.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.structures import InstanceData


def _box_tensor(boxes) -> torch.Tensor:
    return boxes.tensor if hasattr(boxes, 'tensor') else boxes  # mmdet's HorizontalBoxes


def unpack_data_samples(data_samples: Sequence, owner: str,
                        with_gt: bool = True) -> Tuple[Optional[List[Dict]], List[Dict]]:
    """(ground truths per image or None, image metas) of a batch of ``DetDataSample``.

    Raises a ValueError naming ``owner`` on an empty batch, and when ``with_gt`` is asked for
    samples without ``gt_instances``.
    """
    if not data_samples:
        raise ValueError(f'{owner} got an empty batch (no data samples)')
    metas = [sample.metainfo for sample in data_samples]
    if not with_gt:
        return None, metas
    gts = []
    for i, sample in enumerate(data_samples):
        if sample.get('gt_instances') is None:
            raise ValueError(f'{owner}: data sample {i} has no gt_instances (training needs them)')
        gts.append({'bboxes': _box_tensor(sample.gt_instances.bboxes).float().reshape(-1, 4),
                    'labels': sample.gt_instances.labels.long()})
    return gts, metas


def instances_from_results(results: Sequence[Dict[str, torch.Tensor]],
                           detach: bool = False) -> List[InstanceData]:
    """Per-image result dicts (``bboxes``, ``scores``, ``labels``) as mmdet ``InstanceData``."""
    instances = []
    for result in results:
        instance = InstanceData()
        for key, value in result.items():
            value = value.detach() if detach else value
            instance[key] = value.long() if key == 'labels' else value.float()
        instances.append(instance)
    return instances


def proposals_from_instances(instances: Sequence[InstanceData]) -> List[Dict[str, torch.Tensor]]:
    """mmdet's proposal ``InstanceData`` (``bboxes``, ``scores``...) as dicts, detached: proposals
    are inputs of the RoI head, not a path for gradients (as in mmdet)."""
    proposals = []
    for instance in instances:
        proposal = {key: value.detach() for key, value in instance.items()
                    if isinstance(value, torch.Tensor)}
        proposal['bboxes'] = _box_tensor(instance.bboxes).detach()
        proposals.append(proposal)
    return proposals


def losses_for_mmdet(losses: Dict, owner: str) -> Dict:
    """Jittor losses as mmdet expects them: 0-d scalars (Jittor reductions keep one dimension;
    mmdet's ``acc`` has shape (1,), so only ``loss*`` entries), and a FloatingPointError naming the
    loss that is not finite."""
    for name, value in losses.items():
        values = [v.reshape(()) if v.numel() == 1 and 'loss' in name else v
                  for v in (value if isinstance(value, (list, tuple)) else [value])]
        losses[name] = values if isinstance(value, (list, tuple)) else values[0]
        if 'loss' in name and not all(torch.isfinite(v).all() for v in values):
            raise FloatingPointError(f'{owner}: {name} is not finite: {values}')
    return losses
