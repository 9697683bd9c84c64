"""Networks of RESIN. Importing this module needs torch (the ``train`` extra).

The generator F is the only network that is exported and run in production; its
architecture is fixed by :class:`resin.config.GeneratorConfig`, saved in every
checkpoint, so a checkpoint always rebuilds the same network.
"""

from __future__ import annotations

from typing import Any

from resin.config import DegraderConfig, DiscriminatorConfig, GeneratorConfig
from resin.errors import MissingDependencyError

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("torch", "train", "the RESIN networks") from exc


#: |log gain| of a multiplicative generator: at most a factor e^4 ~ 55 up or down per voxel
_MAX_LOG_GAIN = 4.0


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
        if not self.config.residual:
            out = correction
        elif self.config.multiplicative:
            # the log-gain is bounded so that one bad voxel cannot overflow
            out = x * torch.exp(torch.clamp(correction, -_MAX_LOG_GAIN, _MAX_LOG_GAIN))
        else:
            out = x + correction
        floor = self.config.output_floor
        # at inference only: a clamp while training can leave F stuck below it with no gradient
        if floor is None or self.training:
            return out
        return torch.clamp(out, min=floor)


def generator_from_config(**config: Any) -> Generator:
    """F from GeneratorConfig fields as keyword arguments (a bioimage.io package's architecture)."""
    return Generator(GeneratorConfig.model_validate(config))


class ZInterpolated(nn.Module):
    """F behind the z interpolation it was trained behind (``--z-step K``).

    Training on a raw volume sampled every K-th lateral voxel along z interpolates z
    linearly by K (``resin.data.lerp_planes``) and trains F, which keeps its input's shape,
    on that. A model that records scale (K, 1, 1) must give K output planes per input
    plane, so inference runs this: output plane ``j`` is F applied to the input at
    position ``j / K`` (linear between the two nearest planes; past the last plane, the
    last plane), i.e. ``Z * K`` planes whose first ``(Z - 1) K + 1`` are training's grid.
    """

    def __init__(self, generator: Generator, k: int) -> None:
        super().__init__()
        if k < 2:
            raise ValueError(f"a z interpolation needs K >= 2, got {k}")
        self.generator = generator
        self.k = int(k)
        self.size_multiple = generator.size_multiple

    @property
    def config(self) -> GeneratorConfig:
        return self.generator.config

    @config.setter
    def config(self, value: GeneratorConfig) -> None:
        self.generator.config = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.k
        step = torch.cat([x[:, :, 1:], x[:, :, -1:]], dim=2) - x
        up = torch.stack([x + (r / k) * step for r in range(k)], dim=3)  # N, C, Z, K, Y, X
        n, c, z, _, yy, xx = up.shape
        return self.generator(up.reshape(n, c, z * k, yy, xx))


class Degrader(nn.Module):
    """D: maps a high-resolution volume to a raw-looking one (a learnable blur by default).

    ``kind="kernel"`` (default): one free-form 3D kernel, normalised to sum 1, applied by
    FFT with replicate padding. It is the same function class as KernelGAN's bias-free
    linear stack (whose composition is one kernel) but ~10x cheaper on a CPU for a PSF
    20 voxels long, and the sum-1 constraint keeps intensities, so the cycle losses can
    only be met by an F that inverts a blur, not by rescaling. ``kind="linear"``: the
    bias-free stack of convolutions itself; ``kind="cnn"``: LeakyReLUs between them (can
    model non-linear effects such as saturation, but can also hallucinate). All start
    as the identity (a centred delta); training then usually starts the 'kernel' kind
    at the axial blur measured from the raw volume (:meth:`reset_to_gaussian`).
    """

    def __init__(self, config: DegraderConfig | None = None) -> None:
        super().__init__()
        self.config = config or DegraderConfig()
        self.kernel: nn.Parameter | None = None
        self.net: nn.Sequential | None = None
        if self.config.kind == "kernel":
            k = self.config.kernel_size
            self.kernel = nn.Parameter(torch.zeros(k, k, k))
        else:
            sizes = list(self.config.kernel_sizes)
            chans = [1] + [self.config.channels] * (len(sizes) - 1) + [1]
            layers: list[nn.Module] = []
            for i, ks in enumerate(sizes):
                layers.append(nn.Conv3d(chans[i], chans[i + 1], ks, padding=ks // 2,
                                        bias=False, padding_mode="replicate"))
                if self.config.kind == "cnn" and i < len(sizes) - 1:
                    layers.append(nn.LeakyReLU(0.2))
            self.net = nn.Sequential(*layers)
        self.reset_to_identity()

    @torch.no_grad()
    def reset_to_identity(self, noise: float = 3e-4) -> None:
        if self.kernel is not None:
            nn.init.normal_(self.kernel, std=noise)
            self.kernel.abs_()  # the kernel stays non-negative (see project_)
            c = self.kernel.shape[0] // 2
            self.kernel[c, c, c] += 1.0
            return
        assert self.net is not None
        for m in self.net:
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, std=noise)
                c = m.kernel_size[0] // 2
                m.weight[0, 0, c, c, c] += 1.0

    @torch.no_grad()
    def reset_to_gaussian(self, sigma: float, axial_vector: tuple[float, float, float],
                          lateral_sigma: float = 0.3) -> None:
        """Start as a blur of ``sigma`` voxels along ``axial_vector`` (z, y, x), ~none across.

        Only for ``kind="kernel"``. ``lateral_sigma`` keeps a tilted line kernel smooth on
        the voxel grid; 0.3 is a delta for all practical purposes on the axis-aligned one.
        """
        if self.kernel is None:
            raise ValueError("a Gaussian start needs the 'kernel' degrader")
        k = self.kernel.shape[0]
        c = torch.arange(k, dtype=torch.float64) - k // 2
        d = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)
        a = torch.tensor(axial_vector, dtype=torch.float64)
        along = d @ a
        across2 = (d * d).sum(-1) - along**2
        g = torch.exp(-across2 / (2 * lateral_sigma**2))
        if sigma > 0:
            g = g * torch.exp(-(along**2) / (2 * sigma**2))
        else:
            g = g * (along.abs() < 0.5)
        self.kernel.copy_((g / g.sum()).to(self.kernel.dtype))

    @torch.no_grad()
    def project_(self) -> float:
        """Put the kernel back on the non-negative weights after an optimizer step.

        A PSF is non-negative: negative weights would let D sharpen instead of blur and
        drift it towards the identity, where F = D = identity meets both cycle
        constraints without deblurring. Projecting (rather than clamping inside the
        forward pass) keeps every weight trainable. Returns the kernel's sum.
        """
        if self.kernel is None:
            return 1.0
        self.kernel.clamp_(min=0.0)
        return float(self.kernel.sum())

    def blur_kernel(self) -> torch.Tensor:
        """The normalised kernel of ``kind="kernel"``: non-negative, sum 1."""
        assert self.kernel is not None
        k = self.kernel.clamp(min=0.0)  # a no-op after project_; guards loaded weights
        return k / k.sum().clamp(min=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.net is not None:
            return self.net(x)
        k = self.blur_kernel().float()
        r = k.shape[0] // 2
        size = tuple(s + 2 * r for s in x.shape[2:])
        padded = nn.functional.pad(x.float(), (r, r, r, r, r, r), mode="replicate")
        spec = torch.fft.rfftn(padded, s=size, dim=(2, 3, 4)) * torch.fft.rfftn(k, s=size)
        full = torch.fft.irfftn(spec, s=size, dim=(2, 3, 4))
        # circular convolution of the padded input: the last n samples are the valid ones
        return full[..., 2 * r:, 2 * r:, 2 * r:].to(x.dtype)


def _patchgan(conv: type[nn.Conv2d] | type[nn.Conv3d], config: DiscriminatorConfig) -> nn.Sequential:
    f = config.features
    layers: list[nn.Module] = [conv(1, f, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    c = f
    for i in range(1, config.layers):
        c_next = f * min(2**i, 8)
        layers += [conv(c, c_next, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = c_next
    c_next = f * min(2**config.layers, 8)
    layers += [conv(c, c_next, 4, stride=1, padding=1), nn.LeakyReLU(0.2)]
    last = conv(c_next, 1, 4, stride=1, padding=1)
    if config.zero_last:
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class PatchDiscriminator3D(nn.Module):
    """PatchGAN on volumes (kernel 4, LeakyReLU 0.2): one real/fake score per patch region."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.net = _patchgan(nn.Conv3d, config or DiscriminatorConfig())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator2D(nn.Module):
    """PatchGAN on images (the MIPs), kernel 4, LeakyReLU 0.2."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.net = _patchgan(nn.Conv2d, config or DiscriminatorConfig())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def min_discriminator_input(config: DiscriminatorConfig) -> int:
    """Smallest side a PatchGAN with this config accepts (at least one output score)."""
    return config.min_input

