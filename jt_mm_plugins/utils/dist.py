"""Process-group helpers for Jittor parts (torch only: PyTorch owns the distributed state)."""
import torch
import torch.distributed as dist


def reduce_mean(value: float) -> float:
    """The mean of ``value`` over the processes of torch.distributed's default group: ``value``
    itself in one process or when no group is initialised.

    mmdet's heads divide their losses by counts (positives, box-loss weights) averaged this way
    (mmdet's ``reduce_mean``), so that data-parallel training on N processes makes the same update
    as one process on the union of their batches. A Jittor head's counts are host numbers; they are
    averaged through a one-element torch tensor on the device the backend needs (CUDA for NCCL).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return float(value)
    device = (torch.device('cuda', torch.cuda.current_device())
              if dist.get_backend() == 'nccl' else torch.device('cpu'))
    total = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / dist.get_world_size()
