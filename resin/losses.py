"""Loss functions of RESIN (torch): 3D SSIM, the cycle loss, least-squares GAN terms.

Importing this module needs torch (the ``train`` extra).
"""

from __future__ import annotations

import math

from resin.errors import MissingDependencyError

try:
    import torch
    import torch.nn.functional as F  # noqa: N812 - the torch convention
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("torch", "train", "the RESIN losses") from exc


def _gaussian_1d(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32, device=like.device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return (g / g.sum()).to(like.dtype)


def _blur3d(x: torch.Tensor, sizes: tuple[int, int, int], sigma: float) -> torch.Tensor:
    """Separable Gaussian filter, 'valid' (no padding), of an (N, C, Z, Y, X) tensor."""
    n, c = x.shape[:2]
    h = x.reshape(n * c, 1, *x.shape[2:])
    for axis, size in enumerate(sizes):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = size
        h = F.conv3d(h, _gaussian_1d(size, sigma, h).reshape(shape))
    return h.reshape(n, c, *h.shape[2:])


def ssim3d(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5,
           data_range: float = 1.0) -> torch.Tensor:
    """Mean 3D SSIM of two (N, C, Z, Y, X) tensors: Gaussian window, population statistics.

    The same definition as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma, use_sample_covariance=False)`` restricted to the 'valid' region; the window is
    shrunk (kept odd) along any side shorter than it.
    """
    sizes = tuple(min(window, s if s % 2 else s - 1) for s in a.shape[2:])
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    a = a.float()
    b = b.float()
    stacked = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    m = _blur3d(stacked, sizes, sigma)  # type: ignore[arg-type]
    k = a.shape[1]
    mu_a, mu_b, aa, bb, ab = (m[:, i * k:(i + 1) * k] for i in range(5))
    var_a = aa - mu_a**2
    var_b = bb - mu_b**2
    cov = ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def cycle_loss(pred: torch.Tensor, target: torch.Tensor, l1_weight: float = 10.0,
               ssim_weight: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """RESIN's cycle loss: L1 x l1_weight + (1 - SSIM3D) x ssim_weight."""
    loss = l1_weight * (pred.float() - target.float()).abs().mean()
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - ssim3d(pred, target, window, sigma))
    return loss


def lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean (score - 1)^2 for real targets, mean score^2 for fake."""
    target = 1.0 if real else 0.0
    return ((scores.float() - target) ** 2).mean()


def cosine_factor(step: int, total: int, min_ratio: float) -> float:
    """Learning-rate factor of a cosine decay from 1 to ``min_ratio`` over ``total`` steps."""
    t = min(max(step, 0), total) / max(total, 1)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
