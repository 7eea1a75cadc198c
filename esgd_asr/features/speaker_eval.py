"""Speaker separation of i-vectors: cosine scoring of all utterance pairs and the equal error rate."""
from __future__ import annotations

import torch


def equal_error_rate(target: torch.Tensor, nontarget: torch.Tensor) -> float:
    """EER of verification scores: where false rejections of targets meet false acceptances of non-targets."""
    scores = torch.cat([target, nontarget]).double()
    is_target = torch.cat([torch.ones(len(target)), torch.zeros(len(nontarget))]).double()[scores.argsort()]
    zero = torch.zeros(1, dtype=torch.float64)
    false_reject = torch.cat([zero, is_target.cumsum(0)]) / len(target)  # threshold just above i lowest scores
    false_accept = 1 - torch.cat([zero, (1 - is_target).cumsum(0)]) / len(nontarget)
    i = (false_accept - false_reject).abs().argmin()
    return float(false_accept[i] + false_reject[i]) / 2


def cosine_eer(ivectors: torch.Tensor, labels: torch.Tensor) -> float:
    """EER of same-speaker detection by cosine similarity over all pairs of rows."""
    unit = ivectors / ivectors.norm(dim=1, keepdim=True)
    scores = unit @ unit.T
    i, j = torch.triu_indices(len(labels), len(labels), 1)
    same = labels[i] == labels[j]
    return equal_error_rate(scores[i, j][same], scores[i, j][~same])
