from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ndimage = pytest.importorskip("scipy.ndimage")

from resin.config import DegraderConfig, DiscriminatorConfig, GeneratorConfig  # noqa: E402
from resin.models import (  # noqa: E402
    Degrader,
    Generator,
    PatchDiscriminator2D,
    PatchDiscriminator3D,
    min_discriminator_input,
)


def test_kernel_degrader_is_a_replicate_padded_convolution(rng):
    d = Degrader(DegraderConfig(kind="kernel", kernel_size=5))
    with torch.no_grad():
        d.kernel.copy_(torch.from_numpy(rng.random((5, 5, 5)).astype(np.float32)))
    x = rng.random((9, 10, 12)).astype(np.float32)
    got = d(torch.from_numpy(x)[None, None])[0, 0].detach().numpy()
    k = d.blur_kernel().detach().numpy().astype(np.float64)
    ref = ndimage.convolve(x.astype(np.float64), k, mode="nearest")
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert float(d.blur_kernel().detach().sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["kernel", "linear", "cnn"])
def test_degrader_starts_near_identity(rng, kind):
    d = Degrader(DegraderConfig(kind=kind, kernel_size=7, kernel_sizes=[5, 3], channels=2))
    x = torch.from_numpy(rng.random((1, 1, 12, 12, 12)).astype(np.float32))
    assert float((d(x) - x).detach().abs().max()) < 0.05


def test_linear_degrader_has_no_bias_or_nonlinearity():
    d = Degrader(DegraderConfig(kind="linear", kernel_sizes=[5, 3], channels=2))
    assert all(not isinstance(m, torch.nn.LeakyReLU) for m in d.modules())
    assert all(m.bias is None for m in d.modules() if isinstance(m, torch.nn.Conv3d))
    # linear: D(a x + b y) = a D(x) + b D(y)
    x, y = torch.rand(2, 1, 1, 8, 8, 8)
    assert torch.allclose(d(2 * x + 3 * y), 2 * d(x) + 3 * d(y), atol=1e-5)


def test_generator_residual_identity_with_zero_head():
    g = Generator(GeneratorConfig(features=[4, 8, 16]))
    torch.nn.init.zeros_(g.head.weight)
    torch.nn.init.zeros_(g.head.bias)
    x = torch.rand(1, 1, 8, 12, 16)
    assert torch.equal(g(x), x)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_patchgan_minimum_input(layers):
    cfg = DiscriminatorConfig(features=2, layers=layers)
    n = min_discriminator_input(cfg)
    assert PatchDiscriminator2D(cfg)(torch.rand(1, 1, n, n)).numel() >= 1
    assert PatchDiscriminator3D(cfg)(torch.rand(1, 1, n, n, n)).numel() >= 1
    with pytest.raises(RuntimeError):
        PatchDiscriminator2D(cfg)(torch.rand(1, 1, n - 1, n - 1))


def test_patchgan_uses_kernel_4_and_leaky_relu():
    d = PatchDiscriminator3D(DiscriminatorConfig(features=2, layers=2))
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv3d)]
    assert all(c.kernel_size == (4, 4, 4) for c in convs)
    slopes = {m.negative_slope for m in d.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}


@pytest.mark.parametrize("cls, side", [(PatchDiscriminator3D, 3), (PatchDiscriminator2D, 2)])
def test_zero_last_discriminators_start_neutral_and_still_learn(cls, side):
    """zero_last: every input scores 0 and F gets no gradient through the score at the
    start, while the last layer itself gets one (the discriminator learns from step 1);
    the random start scores inputs and pushes F."""
    torch.manual_seed(0)
    x = torch.rand(2, 1, *(16,) * side, requires_grad=True)
    for zero in (True, False):
        d = cls(DiscriminatorConfig(features=2, layers=2, zero_last=zero))
        x.grad = None
        score = d(x)
        ((score - 1.0) ** 2).mean().backward()  # the generator's LSGAN term
        assert x.grad is not None
        if zero:
            assert torch.count_nonzero(score) == 0
            assert torch.count_nonzero(x.grad) == 0
            assert d.net[-1].weight.grad is not None
            assert float(d.net[-1].weight.grad.abs().sum()) > 0.0
        else:
            assert torch.count_nonzero(score) > 0
            assert torch.count_nonzero(x.grad) > 0


def test_multiplicative_generator_is_a_gain_that_keeps_signs_and_zeros(rng):
    from resin.config import GeneratorConfig

    net = Generator(GeneratorConfig(features=[4, 8], multiplicative=True)).eval()
    with torch.no_grad():
        net.head.weight.normal_(0.0, 0.5)
        net.head.bias.fill_(0.1)
    x = torch.from_numpy(rng.random((1, 1, 8, 16, 16)).astype(np.float32))
    x[..., :4, :, :] = 0.0
    out = net(x)
    assert torch.all(out[..., 4:, :, :] > 0)        # no dark halo below a positive input
    assert torch.all(out[..., :4, :, :] == 0)       # no light created in empty space
    with torch.no_grad():
        gain = out[..., 4:, :, :] / x[..., 4:, :, :]
    assert float(gain.max()) <= math.exp(4.0) + 1e-3  # the bounded log-gain


def test_multiplicative_generator_starts_as_identity_with_zero_head(rng):
    from resin.config import GeneratorConfig

    net = Generator(GeneratorConfig(features=[4, 8], multiplicative=True))
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)
    x = torch.from_numpy(rng.random((1, 1, 8, 16, 16)).astype(np.float32))
    assert torch.equal(net(x), x)
