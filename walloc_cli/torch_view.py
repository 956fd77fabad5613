"""The codec as differentiable torch modules: put WaLLoC in front of (or behind) a network.

    from walloc_cli.torch_view import load
    encoder, decoder = load("rgb-16x")               # plain nn.Modules; .to("cuda") works
    z = encoder(x)            # x (N, 3, H, W) in model units (pixels/255 − 0.5), H, W multiples of 8
    x_hat = decoder(z)        # (N, 3, H, W), same units

Both halves are the shipped model, not a re-implementation of it: the encoder
is the same wavelet packet transform (WPT) and 1×1 projection as the numpy
encoder, with the same weights; the decoder is the trained
:class:`walloc_cli.nets.Decoder` followed by the inverse WPT.  Tests hold them
to the numpy path (float latents to ~1e-4, decoded signal to ~1e-4).

Why convolutions: J levels of the periodized packet transform along one axis
form a *block filter* (:func:`walloc_cli.wavelets.packet_filters`): the B = 2^J
bands at position n are one (B × span·B) matrix times span·B consecutive samples.
That is exactly a strided convolution, so the whole transform is two convolutions
(one per axis) instead of J levels of slicing, and runs batched on any device.
The synthesis filter is applied in polyphase form (bands as input channels, the B
samples of a block as output channels), followed by interleaving the blocks.
(For the audio model, J = 8, a block filter has 2,048 taps per band and takes
about a second to derive, once per process.)

Importing this module imports torch; ``import walloc_cli`` never imports this module.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import wavelets
from .model import DEFAULT_LATENT_MODEL, CodecModel, load_model
from .nets import Decoder

Range = Literal["model", "unit", "uint8"]
Quantize = Literal[None, "round", "ste"]
RANGES = ("model", "unit", "uint8")


# -- units -----------------------------------------------------------------------------------
def to_model_units(x: torch.Tensor, value_range: Range) -> torch.Tensor:
    """Image values -> model units (pixels/255 − 0.5), the encoder's input.

    ``"model"``: already in model units; ``"unit"``: 0..1; ``"uint8"``: 0..255 (any dtype).
    """
    if value_range == "model":
        return x
    if value_range == "unit":
        return x - 0.5
    if value_range == "uint8":
        return x / 255.0 - 0.5
    raise ValueError(f"value range must be one of {RANGES}, not {value_range!r}")


def from_model_units(x: torch.Tensor, value_range: Range) -> torch.Tensor:
    """Inverse of :func:`to_model_units`; not rounded or clipped, so gradients stay useful."""
    if value_range == "model":
        return x
    if value_range == "unit":
        return x + 0.5
    if value_range == "uint8":
        return (x + 0.5) * 255.0
    raise ValueError(f"value range must be one of {RANGES}, not {value_range!r}")


def round_latents(z: torch.Tensor, how: Quantize) -> torch.Tensor:
    """None: float latents; "round": integers (zero gradient); "ste": rounded forward, identity backward."""
    if how is None:
        return z
    if how == "round":
        return torch.round(z)
    if how == "ste":
        return z + (torch.round(z) - z).detach()
    raise ValueError(f"quantize must be None, 'round' or 'ste', not {how!r}")


# -- the transform -------------------------------------------------------------------------------
def _wrap_index(first: int, count: int, extra: int, n: int, device: torch.device) -> torch.Tensor:
    """Periodic-extension indices first … first+count+extra−1 (mod n): works for any pad, even > n."""
    return torch.arange(first, first + count + extra, device=device) % n


def _codec(model: str | CodecModel) -> CodecModel:
    return model if isinstance(model, CodecModel) else load_model(model)


class PacketTransform(nn.Module):
    """Periodized J-level wavelet packet transform as convolutions, batched, any device.

    ``forward``: (N, C, H, W) -> (N, C·4^J, H/B, W/B) (``dims=2``) or
    (N, C, T) -> (N, C·2^J, T/B) (``dims=1``), channels in the order of the
    reference :func:`walloc_cli.wavelets.wpt2d` / ``wpt1d`` (what the encoder weights expect).
    ``inverse`` undoes it exactly (up to float rounding).
    """

    def __init__(self, levels: int, wavelet: str = wavelets.DEFAULT_WAVELET, dims: int = 2) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, not {dims}")
        analysis, synthesis = wavelets.packet_filters(levels, wavelet)
        self.levels, self.dims, self.block = levels, dims, 2**levels
        self.analysis_first, self.analysis_span = analysis.first, analysis.span
        self.synthesis_first, self.synthesis_span = synthesis.first, synthesis.span
        b = self.block
        # analysis: a strided conv over samples, kernel (B bands, 1, span·B samples)
        self.register_buffer("analysis", torch.tensor(analysis.kernel, dtype=torch.float32)[:, None, :],
                             persistent=False)
        # synthesis, polyphase: (B samples, B bands, span positions); kernel[s, m·B + b] -> [s, b, m]
        polyphase = synthesis.kernel.reshape(b, synthesis.span, b).transpose(0, 2, 1)
        self.register_buffer("synthesis", torch.tensor(np.ascontiguousarray(polyphase), dtype=torch.float32),
                             persistent=False)
        if dims == 2:
            order = torch.from_numpy(wavelets.packet_order_2d(levels))     # reference channel -> r·B + k
            self.register_buffer("order", order, persistent=False)
            self.register_buffer("unorder", torch.argsort(order), persistent=False)

    # one axis at a time ------------------------------------------------------------------
    def _analyse(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """(M, 1, A, W) along A (axis 2) or W (axis 3), or (M, 1, T) (axis 2) -> (M, B, …/B …)."""
        b, n = self.block, x.shape[axis]
        index = _wrap_index(self.analysis_first * b, n, (self.analysis_span - 1) * b, n, x.device)
        padded = x.index_select(axis, index)
        if x.dim() == 3:
            return F.conv1d(padded, self.analysis, stride=b)
        kernel = self.analysis[:, :, :, None] if axis == 2 else self.analysis[:, :, None, :]
        return F.conv2d(padded, kernel, stride=(b, 1) if axis == 2 else (1, b))

    def _synthesise(self, y: torch.Tensor, axis: int) -> torch.Tensor:
        """(M, B bands, P, Q) along P (axis 2) or Q (axis 3), or (M, B, P) -> (M, B samples, …) per position."""
        n = y.shape[axis]
        index = _wrap_index(self.synthesis_first, n, self.synthesis_span - 1, n, y.device)
        padded = y.index_select(axis, index)
        if y.dim() == 3:
            return F.conv1d(padded, self.synthesis)
        kernel = self.synthesis[:, :, :, None] if axis == 2 else self.synthesis[:, :, None, :]
        return F.conv2d(padded, kernel)

    def _check(self, x: torch.Tensor, what: str) -> None:
        if x.dim() != self.dims + 2:
            shape = "(N, C, H, W)" if self.dims == 2 else "(N, C, T)"
            raise ValueError(f"{what} must be {shape}, got shape {tuple(x.shape)}")

    # the transform ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, "input")
        x = x.to(self.analysis.dtype)
        b = self.block
        if any(s % b for s in x.shape[2:]):
            raise ValueError(f"signal sides {tuple(x.shape[2:])} must be multiples of {b} (pad first)")
        if self.dims == 1:
            n, c, t = x.shape
            return self._analyse(x.reshape(n * c, 1, t), 2).reshape(n, c * b, t // b)
        n, c, h, w = x.shape
        rows = self._analyse(x.reshape(n * c, 1, h, w), 2)                          # (NC, r, H/B, W)
        both = self._analyse(rows.reshape(n * c * b, 1, h // b, w), 3)              # (NC·r, k, H/B, W/B)
        natural = both.reshape(n, c, b * b, h // b, w // b)                         # r·B + k
        return natural.index_select(2, self.order).reshape(n, c * b * b, h // b, w // b)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y, "coefficients")
        y = y.to(self.synthesis.dtype)
        b = self.block
        if self.dims == 1:
            n, cb, p = y.shape
            samples = self._synthesise(y.reshape(n * cb // b, b, p), 2)             # (NC, s, P)
            return samples.transpose(1, 2).reshape(n, cb // b, p * b)
        n, cbb, p, q = y.shape
        c = cbb // (b * b)
        natural = y.reshape(n, c, b * b, p, q).index_select(2, self.unorder)       # r·B + k
        columns = self._synthesise(natural.reshape(n * c * b, b, p, q), 3)          # (NC·r, x, P, Q)
        columns = columns.permute(0, 2, 3, 1).reshape(n * c, b, p, q * b)          # (NC, r, P, W)
        rows = self._synthesise(columns, 2)                                         # (NC, y, P, W)
        return rows.permute(0, 2, 1, 3).reshape(n, c, p * b, q * b)


# -- the codec's halves ----------------------------------------------------------------------------
class WallocEncoder(nn.Module):
    """Signal -> latents: WPT then the model's 1×1 projection; differentiable, not rounded by default.

    Input (N, C, H, W) for image models (C = 3, sides multiples of 8 for
    ``rgb-16x``), (N, 1, T) for the audio model (T a multiple of 256; stereo is
    coded as two signals, mid (L+R)/2 and side (L−R)/2).  ``input_range`` says
    the input's units for images: ``"model"`` (pixels/255 − 0.5, what
    :func:`walloc_cli.api.image_to_latents` feeds the encoder), ``"unit"`` (0..1)
    or ``"uint8"`` (0..255, any dtype).  ``quantize``: None (float latents),
    ``"round"`` (the integers a .wlc stores, up to exact ties) or ``"ste"``
    (rounded, with straight-through gradients).

    The projection is a trainable parameter like any nn layer; call
    ``requires_grad_(False)`` to use the codec as a fixed front end.

    Quality-ladder models quantize with a per-quality step and a dead zone; their
    float latents (the default output) are already in the decoder's units, and
    ``quantize`` is refused for them rather than rounding at the wrong scale.
    """

    def __init__(self, model: str | CodecModel = DEFAULT_LATENT_MODEL, *, input_range: Range = "model",
                 quantize: Quantize = None) -> None:
        super().__init__()
        codec = _codec(model)
        cfg = self.config = codec.config
        if cfg.dims == 1 and input_range != "model":
            raise ValueError("audio models take samples at full scale ±1: input_range must be 'model'")
        if quantize is not None and codec.has_quality:
            raise ValueError(f"model {cfg.name} quantizes per quality (use quantize=None for its float latents)")
        to_model_units(torch.zeros(()), input_range)  # refuse a bad range now, not at the first batch
        round_latents(torch.zeros(()), quantize)
        self.input_range, self.quantize = input_range, quantize
        self.transform = PacketTransform(cfg.levels, cfg.wavelet, cfg.dims)
        self.weight = nn.Parameter(torch.tensor(codec.encoder_weight, dtype=torch.float32))  # (L, C·B^dims)
        self.bias = nn.Parameter(torch.tensor(codec.encoder_bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.transform(to_model_units(x, self.input_range))
        kernel = self.weight.reshape(*self.weight.shape, *(1,) * self.config.dims)
        conv = F.conv2d if self.config.dims == 2 else F.conv1d
        return round_latents(conv(coefficients, kernel, self.bias), self.quantize)


class WallocDecoder(nn.Module):
    """Latents -> signal: the trained decoder net, then the inverse WPT; differentiable.

    Input: float latents (dequantized: integer latents · step) (N, L, h, w) or (N, L, t);
    output (N, C, 8h, 8w) / (N, 1, 256t) in ``output_range`` units (see
    :class:`WallocEncoder`), not rounded or clipped.  Latent grids are decoded
    whole, as by :meth:`walloc_cli.model.CodecModel.from_latents` (which only
    windows very large ones, with identical results).
    """

    def __init__(self, model: str | CodecModel = DEFAULT_LATENT_MODEL, *, output_range: Range = "model") -> None:
        super().__init__()
        codec = _codec(model)
        cfg = self.config = codec.config
        if cfg.dims == 1 and output_range != "model":
            raise ValueError("audio models give samples at full scale ±1: output_range must be 'model'")
        from_model_units(torch.zeros(()), output_range)
        self.output_range = output_range
        self.net = decoder_net(codec)
        self.transform = PacketTransform(cfg.levels, cfg.wavelet, cfg.dims)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        param = next(self.net.parameters())  # follows .to(device / dtype)
        coefficients = self.net(latents.to(param.dtype))
        return from_model_units(self.transform.inverse(coefficients), self.output_range)


def decoder_net(codec: CodecModel) -> nn.Module:
    """A trainable copy of the model's latents -> coefficients map (training it leaves the codec alone).

    Neural models: the trained :class:`walloc_cli.nets.Decoder`; linear ones
    (quality ladders): their 1×1 map, which numpy runs in the codec.
    """
    cfg = codec.config
    if cfg.decoder_kind == "linear":
        conv = nn.Conv2d if cfg.dims == 2 else nn.Conv1d
        net = conv(cfg.latent_channels, cfg.coefficient_channels, 1)
        weight, bias = codec.linear_map()
        with torch.no_grad():
            net.weight.copy_(torch.from_numpy(weight).reshape(net.weight.shape))
            net.bias.copy_(torch.from_numpy(bias))
        return net
    net = Decoder(cfg.latent_channels, cfg.coefficient_channels, cfg.decoder_width, cfg.decoder_blocks, cfg.dims)
    net.load_state_dict(codec.decoder().state_dict())
    return net


def load(model: str | CodecModel = DEFAULT_LATENT_MODEL, *, value_range: Range = "model",
         quantize: Quantize = None) -> tuple[WallocEncoder, WallocDecoder]:
    """(encoder, decoder) of one model, with the same units on both ends."""
    return (WallocEncoder(model, input_range=value_range, quantize=quantize),
            WallocDecoder(model, output_range=value_range))
