"""Networks of RESIN. Importing this module needs torch (the ``train`` extra).

The generator F is the only network that is exported and run in production; its
architecture is fixed by :class:`resin.config.GeneratorConfig`, saved in every
checkpoint, so a checkpoint always rebuilds the same network.
"""

from __future__ import annotations

from resin.config import GeneratorConfig
from resin.errors import MissingDependencyError

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("torch", "train", "the RESIN networks") from exc


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
    )


class Generator(nn.Module):
    """F: a 3D U-Net with a global residual (output = input + correction).

    No normalization layers; trilinear upsampling followed by a convolution instead of
    transposed convolutions (exports and compiles more reliably). Input sides must be
    multiples of ``2 ** (len(features) - 1)``.
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        feats = list(self.config.features)
        self.size_multiple = 2 ** (len(feats) - 1)
        self.down = nn.ModuleList()
        c_in = self.config.in_channels
        for f in feats:
            self.down.append(_conv_block(c_in, f))
            c_in = f
        self.pool = nn.MaxPool3d(2)
        self.up_convs = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for f_hi, f_lo in zip(reversed(feats[1:]), reversed(feats[:-1]), strict=True):
            self.up_convs.append(nn.Conv3d(f_hi, f_lo, 3, padding=1))
            self.up_blocks.append(_conv_block(2 * f_lo, f_lo))
        self.head = nn.Conv3d(feats[0], self.config.in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h)
            if i < len(self.down) - 1:
                skips.append(h)
                h = self.pool(h)
        for up_conv, block in zip(self.up_convs, self.up_blocks, strict=True):
            skip = skips.pop()
            h = nn.functional.interpolate(h, size=skip.shape[2:], mode="trilinear",
                                          align_corners=False)
            h = up_conv(h)
            h = block(torch.cat([h, skip], dim=1))
        correction = self.head(h)
        return x + correction if self.config.residual else correction
