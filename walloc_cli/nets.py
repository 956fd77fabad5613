"""torch modules: the WaLLoC autoencoder as used for training and decoding.

Only the decoder side and training need torch; encoding for storage uses the
numpy projection in :mod:`walloc_cli.model`, which is the same linear map.
These modules are also the differentiable "compressed-domain" view of the codec
(no entropy coding): feed them WPT coefficients, get latents and back.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _conv(dims: int) -> type[nn.Module]:
    return {1: nn.Conv1d, 2: nn.Conv2d}[dims]


class ResidualBlock(nn.Module):
    """conv-act-conv with a skip; the second conv starts at zero so a new block is an identity."""

    def __init__(self, width: int, dims: int = 2) -> None:
        super().__init__()
        conv = _conv(dims)
        self.conv1 = conv(width, width, 3, padding=1)
        self.conv2 = conv(width, width, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Decoder(nn.Module):
    """Latents -> WPT coefficients: a linear 1×1 path plus a small conv net on top.

    The linear path starts as the PCA inverse and the nonlinear branch starts at
    zero, so training begins at the best linear codec and the network only has
    to learn a residual (dequantization, texture) — this is what makes training
    on two CPU cores worthwhile.
    """

    def __init__(self, latent_channels: int, out_channels: int, width: int, blocks: int, dims: int = 2) -> None:
        super().__init__()
        conv = _conv(dims)
        self.linear = conv(latent_channels, out_channels, 1)
        self.stem = conv(latent_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(width, dims) for _ in range(blocks)])
        self.head = conv(width, out_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        residual = self.head(F.silu(self.blocks(self.stem(latents))))
        return self.linear(latents) + residual


class Encoder(nn.Module):
    """The whole WaLLoC encoder: a 1×1 projection of WPT coefficients (no nonlinearity)."""

    def __init__(self, in_channels: int, latent_channels: int, dims: int = 2) -> None:
        super().__init__()
        self.project = _conv(dims)(in_channels, latent_channels, 1)

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self.project(coefficients)


class FactorizedPrior(nn.Module):
    """Per-channel logistic mixture: a differentiable rate estimate for training.

    Shipped files are coded with integer histograms fitted after training
    (:mod:`walloc_cli.entropy`); this density only steers the encoder towards
    latents that are cheap to code.
    """

    def __init__(self, channels: int, components: int = 3) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(channels, components))
        self.means = nn.Parameter(torch.linspace(-0.5, 0.5, components).repeat(channels, 1))
        self.log_scales = nn.Parameter(torch.zeros(channels, components))

    @torch.no_grad()
    def initialise_from(self, latents: torch.Tensor) -> None:
        """Centre each channel's mixture on the data; latents are (N, C, ...)."""
        flat = latents.transpose(0, 1).reshape(latents.shape[1], -1)
        std = flat.std(dim=1).clamp_min(0.3)
        scale = std * math.sqrt(3) / math.pi
        spread = torch.tensor([0.5, 1.0, 2.0])
        self.log_scales.copy_(torch.log(scale[:, None] * spread[None, :]))
        self.means.copy_(flat.mean(dim=1)[:, None].expand_as(self.means))

    def bits(self, y: torch.Tensor) -> torch.Tensor:
        """-log2 P(y) for integer-binned values y (N, C, ...), element-wise."""
        shape = (1, -1) + (1,) * (y.dim() - 2) + (self.logits.shape[1],)
        weights = torch.softmax(self.logits, dim=1).reshape(shape)
        means = self.means.reshape(shape)
        inv_scales = torch.exp(-self.log_scales).reshape(shape)
        centred = y.unsqueeze(-1) - means
        upper = torch.sigmoid((centred + 0.5) * inv_scales)
        lower = torch.sigmoid((centred - 0.5) * inv_scales)
        p = (weights * (upper - lower)).sum(-1)
        return -torch.log2(p.clamp_min(1e-9))


class WallocAutoencoder(nn.Module):
    """Encoder + decoder + prior in WPT space, for training and compressed-domain use."""

    def __init__(self, in_channels: int, latent_channels: int, width: int, blocks: int, dims: int = 2) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, latent_channels, dims)
        self.decoder = Decoder(latent_channels, in_channels, width, blocks, dims)
        self.prior = FactorizedPrior(latent_channels)

    def forward(self, coefficients: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: returns (decoded coefficients, total bits).

        Rate is measured on noisy latents (uniform noise in [-0.5, 0.5), the
        differentiable stand-in for rounding); the decoder sees rounded latents
        through a straight-through estimator, as it will at inference.
        """
        y = self.encoder(coefficients)
        noise = torch.rand(y.shape, generator=generator, device=y.device) - 0.5
        bits = self.prior.bits(y + noise).sum()
        rounded = y + (torch.round(y) - y).detach()
        return self.decoder(rounded), bits
