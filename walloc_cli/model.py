"""Model registry and the codec's two halves: numpy encoder, torch decoder.

A model is two files in a weights folder:

* ``<name>.json``: the architecture (modality, channels, WPT levels, wavelet,
  latent width, decoder size) and the SHA-256 of the arrays file;
* ``<name>.npz``: the arrays — encoder projection, decoder parameters (fp16),
  integer entropy tables.  Loaded with ``allow_pickle=False``: nothing in a
  weights file can execute code.

Why npz rather than a torch checkpoint: the encoder is a WPT plus one matrix
product, and must run where torch is not installed or too heavy to import
(see the featherweight-encoder goal).  torch is imported only when the
decoder is first needed.

Every ``.wlc`` file names its model and the first 16 hex digits of the
weights' SHA-256; decoding with other weights is refused rather than
producing garbage.
"""
from __future__ import annotations

from .errors import WallocError
from .quality import check_quality

import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from . import wavelets
from .entropy import DcPyramid, EntropyTables, RaggedTables
from .threads import available_cores

if TYPE_CHECKING:  # the type hint only: postfilter is imported where a refiner is loaded
    from .postfilter import Refiner, WideFilter

DEFAULT_IMAGE_MODEL = "rgb-1x"
# The compressed-domain representation (12 latents per 8×8 block): what `walloc latents`,
# to_latents and the torch view default to, whatever the storage default is.
DEFAULT_LATENT_MODEL = "rgb-16x"
DEFAULT_AUDIO_MODEL = "stereo-1x"
# Audio's compact learned representation (54 latents per 256 samples), for `walloc latents`
# and to_latents: the ladder's latents are its quantized coefficients, one per sample.
DEFAULT_AUDIO_LATENT_MODEL = "stereo-ms"
HASH_DIGITS = 16


class ModelError(WallocError):
    """A model is unknown, or its weights are missing or corrupted."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one codec model, as stored in ``<name>.json``."""

    name: str
    modality: str            # "image" or "audio"
    channels: int            # signal channels the model codes (3 for RGB, 2 for stereo)
    levels: int              # WPT levels J
    wavelet: str
    latent_channels: int
    decoder_width: int
    decoder_blocks: int
    sha256: str              # of the .npz file
    table_sets: int = 1      # entropy table sets (audio: 2 = mid/mono, side)
    coding: str = "static"   # "static": one table per channel; "context": quality ladder + context tables
    decoder_kind: str = "neural"  # "neural": torch conv decoder; "linear": numpy 1×1 map, no torch
    context_depth: int = 0   # context models: previous channels whose activity picks the table
    context_bins: int = 1    # context models: tables per (quality anchor, channel)
    lifted_channels: int = 0  # context models: leading (DC) channels, coded apart (Haar levels / pyramid)
    neighbour_cuts: tuple = ()  # context models: checkerboard refinement of white squares' tables
    diagonal_cuts: tuple = ()   # context models: odd/odd squares' refinement by their diagonals (coder v5)
    family: str = "autoencoder"  # which module codes it: "autoencoder" (this file) or "audio-ladder"
    info: dict = field(default_factory=dict, compare=False)  # training facts, measured quality

    @property
    def dims(self) -> int:
        return 2 if self.modality == "image" else 1

    @property
    def coefficient_channels(self) -> int:
        return self.channels * (4 if self.dims == 2 else 2) ** self.levels

    @property
    def block(self) -> int:
        """Spatial (or temporal) size of one latent position, in samples per axis."""
        return 2**self.levels

    @property
    def short_hash(self) -> str:
        return self.sha256[:HASH_DIGITS]

    @classmethod
    def from_json(cls, data: Any) -> "ModelConfig":
        """A config from a model's JSON, every field checked for type and range.

        A hand-edited or mismatched JSON must fail here with the field it got wrong,
        not later as a ZeroDivisionError or an IndexError deep inside the coder.
        Raises ValueError naming the field (the registry adds the file name).
        """
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in ("name", "modality", "channels", "levels", "wavelet", "latent_channels",
                               "decoder_width", "decoder_blocks", "sha256") if k not in data]
        if missing:
            raise ValueError(f"field {missing[0]!r} missing")
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key, (lo, hi) in _INT_FIELDS.items():
            if key in fields:
                value = fields[key]
                if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                    raise ValueError(f"field {key!r} is {value!r}, expected an integer from {lo} to {hi}")
        for key, allowed in _CHOICE_FIELDS.items():
            if key in fields and (not isinstance(fields[key], str) or fields[key] not in allowed):
                raise ValueError(f"field {key!r} is {fields[key]!r}, expected one of {', '.join(allowed)}")
        for key in _NAME_FIELDS:
            if key in fields and not isinstance(fields[key], str):
                raise ValueError(f"field {key!r} is {fields[key]!r}, not a name")
        if not isinstance(fields["name"], str) or not fields["name"]:
            raise ValueError("field 'name' is not a model name")
        if not isinstance(fields["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", fields["sha256"]):
            raise ValueError("field 'sha256' is not 64 hex digits")
        if not isinstance(fields.get("info", {}), dict):
            raise ValueError("field 'info' is not an object")
        if not isinstance(fields["wavelet"], str):
            raise ValueError(f"field 'wavelet' is {fields['wavelet']!r}, not a wavelet name")
        try:
            wavelets.filter_bank(fields["wavelet"])
        except Exception:  # pywt raises ValueError for unknown names, others for odd input
            raise ValueError(f"field 'wavelet' names no usable wavelet ({fields['wavelet']!r})") from None
        for key in ("neighbour_cuts", "diagonal_cuts"):
            cuts = fields.get(key, ())
            if (not isinstance(cuts, (list, tuple)) or len(cuts) > 16
                    or any(not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**31 for v in cuts)
                    or any(b <= a for a, b in zip(cuts, cuts[1:]))):
                raise ValueError(f"field {key!r} is not a list of increasing positive integers")
            fields[key] = tuple(cuts)
        if fields["diagonal_cuts"] and not fields["neighbour_cuts"]:
            raise ValueError("field 'diagonal_cuts' needs 'neighbour_cuts' (a checkerboard)")
        config = cls(**fields)
        if config.context_depth > config.latent_channels or config.lifted_channels > config.latent_channels:
            raise ValueError("fields 'context_depth'/'lifted_channels' exceed 'latent_channels'")
        return config


# Integer fields of a model's JSON and their sane ranges (anything outside is a damaged file).
_INT_FIELDS: dict[str, tuple[int, int]] = {
    "channels": (1, 16), "levels": (1, 10), "latent_channels": (1, 1 << 16), "decoder_width": (0, 1 << 12),
    "decoder_blocks": (0, 64), "table_sets": (1, 2), "context_depth": (0, 1 << 16), "context_bins": (1, 256),
    "lifted_channels": (0, 1 << 16),
}
_CHOICE_FIELDS: dict[str, tuple[str, ...]] = {"modality": ("image", "audio", "raster"), "decoder_kind": ("neural", "linear")}
# Free-form names each family checks for itself (a new family may bring its own).
_NAME_FIELDS = ("coding", "family")


def weights_dirs() -> list[Path]:
    """Where models are looked up: $WALLOC_WEIGHTS, then the package's and the checkout's weights/."""
    here = Path(__file__).resolve().parent
    dirs = []
    if os.environ.get("WALLOC_WEIGHTS"):
        dirs.append(Path(os.environ["WALLOC_WEIGHTS"]))
    dirs += [here / "weights", here.parent / "weights"]
    return dirs


def available_models() -> dict[str, Path]:
    """Model name -> config path, first weights folder wins."""
    found: dict[str, Path] = {}
    for d in weights_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.json")):
                found.setdefault(p.stem, p)
    return found


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CodecModel:
    """A loaded model: ``to_latents`` (numpy only) and ``from_latents`` (torch decoder)."""

    def __init__(self, config: ModelConfig, arrays: dict[str, np.ndarray]) -> None:
        self.config = config
        self.source: Path | None = None  # the weights file, set by load_model (named in errors)
        if config.coding not in ("static", "context"):
            raise ModelError(f"field 'coding' is {config.coding!r}; this model family codes 'static' or 'context'")
        latents, coefficients = config.latent_channels, config.coefficient_channels
        # float64 projection: the rounding of latents then does not depend on BLAS
        # kernels or thread counts in any practical case.
        self.encoder_weight = array_of(arrays, "encoder.weight", (latents, coefficients)).astype(np.float64)
        self.encoder_bias = array_of(arrays, "encoder.bias", (latents,)).astype(np.float64)
        self.tables = EntropyTables(int_array(arrays, "entropy.lo", np.int32), int_array(arrays, "entropy.size", np.int32),
                                    int_array(arrays, "entropy.freqs", np.int32))
        self.tables.validate()
        if self.tables.channels != latents * config.table_sets:
            raise ModelError(f"entropy tables have {self.tables.channels} channels, the config asks for "
                             f"{latents * config.table_sets}")
        self._decoder_arrays = {k[len("decoder."):]: v for k, v in arrays.items() if k.startswith("decoder.")}
        self._decoder = None
        if config.decoder_kind == "linear":  # the numpy decoder uses these two arrays directly
            weight = array_of(arrays, "decoder.linear.weight")
            if weight.size != coefficients * latents or weight.shape[:2] != (coefficients, latents):
                raise ModelError(f"array 'decoder.linear.weight' has shape {weight.shape}, expected "
                                 f"({coefficients}, {latents}, 1, 1)")
            array_of(arrays, "decoder.linear.bias", (coefficients,))
        self.ladder = QualityLadder.from_arrays(arrays, config) if config.coding == "context" else None

    @property
    def has_quality(self) -> bool:
        """Whether files of this model carry a quality (a quantization step) of their own."""
        return self.ladder is not None

    def tables_for(self, *table_sets: int) -> EntropyTables:
        """Tables for latents coded with these sets in order (0 = image/mid/mono, 1 = side)."""
        latents = self.config.latent_channels
        return self.tables.select(np.concatenate([np.arange(t * latents, (t + 1) * latents) for t in table_sets]))

    # -- transform -----------------------------------------------------------------
    def analyse(self, signal: np.ndarray) -> np.ndarray:
        """Signal (C, *spatial), sides multiples of ``block`` -> WPT coefficients (C·4^J | C·2^J, …)."""
        # Audio keeps the level-by-level transform: at J = 8 a block filter has 2,048 taps
        # per band (more arithmetic than 8 levels of 10-tap filters) and costs seconds to derive.
        transform = wavelets.fast_wpt2d if self.config.dims == 2 else wavelets.wpt1d
        return transform(signal, self.config.levels, self.config.wavelet)

    def synthesise(self, coefficients: np.ndarray) -> np.ndarray:
        """WPT coefficients (C·4^J | C·2^J, *latent_shape) -> signal (C, *spatial)."""
        transform = wavelets.fast_iwpt2d if self.config.dims == 2 else wavelets.iwpt1d
        return transform(coefficients, self.config.levels, self.config.wavelet)

    # -- encoder (numpy) -------------------------------------------------------------
    def project(self, coefficients: np.ndarray) -> np.ndarray:
        """The linear encoder: float latents (L, *latent_shape), before rounding."""
        flat = coefficients.reshape(coefficients.shape[0], -1).astype(np.float64)
        z = self.encoder_weight @ flat + self.encoder_bias[:, None]
        return z.reshape(self.config.latent_channels, *coefficients.shape[1:])

    @property
    def colour_only_channels(self) -> np.ndarray:
        """(L,) bool: latent channels through which a grey image (R = G = B) passes less than
        half its amplitude.  The KLT of colour photos separates luma from colour almost
        perfectly (rgb-1x: 62 channels keep ≥ 0.99 of a grey input's norm, 126 keep < 0.1,
        four lie between), so a grey image leaves these channels at (nearly) zero; grey files
        send them as zeros without coding them (``"grey": true``).  Derived from the weights
        in float64 far from the 0.5 cut, so every machine draws the same line."""
        if not hasattr(self, "_colour_only_cache"):
            weight = np.asarray(self.encoder_weight, np.float64)
            per_colour = weight.shape[1] // self.config.channels
            grey = np.kron(np.ones((self.config.channels, 1)) / np.sqrt(self.config.channels), np.eye(per_colour))
            self._colour_only_cache = np.linalg.norm(weight @ grey, axis=1) < 0.5
        return self._colour_only_cache

    @property
    def _positions_weight(self) -> np.ndarray:
        """Encoder weight with columns in :func:`wavelets.wpt2d_positions`' (c, r, k) order, transposed."""
        if not hasattr(self, "_positions_weight_cache"):
            self._positions_weight_cache = np.ascontiguousarray(self.encoder_weight[:, self._positions_order()].T)
        return self._positions_weight_cache

    def _positions_order(self) -> np.ndarray:
        """Coefficient channel (packet order, as the weights list them) of each column of
        :func:`wavelets.wpt2d_positions`' (C, B_rows, B_cols) layout: the encoder's and the
        linear decoder's weights are reordered by it once, so neither reorders coefficients."""
        per_colour = wavelets.packet_order_2d(self.config.levels)      # packet channel j -> position r·B + k
        inverse = np.argsort(per_colour)                               # position -> packet channel
        size = per_colour.size
        return (np.arange(self.config.channels)[:, None] * size + inverse[None, :]).reshape(-1)

    def image_coefficients(self, signal: np.ndarray) -> tuple[np.ndarray, int, int]:
        """An image window (C, H, W) -> its packet coefficients (H'·W', C·4^J) in
        :func:`wavelets.wpt2d_positions`' layout, and H', W': the input of both projections."""
        cfg = self.config
        image = np.asarray(signal, dtype=np.float32).transpose(1, 2, 0)   # a view for (H, W, C) data
        coefficients = wavelets.wpt2d_positions(image, cfg.levels, cfg.wavelet)
        hb, wb = coefficients.shape[:2]
        return coefficients.reshape(hb * wb, -1), hb, wb

    def float_latents(self, signal: np.ndarray) -> np.ndarray:
        """Signal window (C, *spatial) in model units -> latents (L, *latent_shape) before rounding.

        Images take the channel-last fast path: the transform leaves each
        position's coefficients contiguous, so the projection is one matrix
        product with no transposing of the coefficient array.
        """
        if self.config.dims == 2:
            coefficients, hb, wb = self.image_coefficients(signal)
            z = coefficients.astype(np.float64) @ self._positions_weight + self.encoder_bias
            return z.reshape(hb, wb, -1).transpose(2, 0, 1)
        return self.project(self.analyse(np.asarray(signal, dtype=np.float32)))

    def _scaled_projection(self, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's projection with the quality's steps folded in: weight (L, coefficients)
        with columns in :func:`wavelets.wpt2d_positions`' order, and bias (L, 1), float32; kept
        per quality (a batch of files shares one)."""
        cache = self.__dict__.setdefault("_scaled_projection_cache", {})
        if quality not in cache:
            steps = self.ladder.steps(quality).reshape(-1, 1)
            weight = np.ascontiguousarray(self._positions_weight.T / steps, np.float32)
            cache[quality] = weight, (self.encoder_bias.reshape(-1, 1) / steps).astype(np.float32)
        return cache[quality]

    def _scaled_image_latents(self, signal: np.ndarray, quality: int) -> np.ndarray:
        """An image window's latents in units of their quantization steps, float32 (L, H', W')
        in C order — what :meth:`latents_of_window` returns with ``scaled`` for images.

        The encoder's hot path (a 768×512 photo at q 75: 14 ms of its 66 went to the float64
        product and 4 to the division by the steps): one float32 product with the steps
        folded into the weights, straight into channel-major order.  Float32 is ample here —
        the rounding that follows decides between integers, and the decoder never sees these
        floats; each latent is still one fixed-length dot product, so a strip's latents are
        those of the whole image."""
        weight, bias = self._scaled_projection(quality)
        coefficients, hb, wb = self.image_coefficients(signal)
        z = weight @ coefficients.T
        z += bias
        return z.reshape(-1, hb, wb)

    def latents_of_window(self, signal: np.ndarray, quality: int | None = None, scaled: bool = False) -> np.ndarray:
        """Signal window (C, *spatial) in model units -> integer latents (int32).

        The WPT runs in float32 (half the memory traffic of float64; each
        coefficient is one fixed-length dot product, so it does not vary with
        the window); the projection accumulates in float64.  Ladder models
        divide by the quality's per-channel steps and round with a dead zone;
        with ``scaled`` they stop before rounding and return float32 latents in
        units of their steps, for :func:`walloc_cli.rdoq.rd_round`.
        """
        if scaled and self.ladder is not None and self.config.dims == 2:
            return self._scaled_image_latents(signal, quality)
        z = self.float_latents(signal)
        if self.ladder is None:
            z = np.rint(z)
        elif scaled:
            # C order: the RD rounding and the coder walk channels one plane at a time
            return self.ladder.scale(z, quality).astype(np.float32, order="C")
        else:
            z = self.ladder.quantize(z, quality)
        limit = np.iinfo(np.int32).max
        return np.clip(z, -limit, limit).astype(np.int32)

    def dequantize(self, latents: np.ndarray, quality: int | None = None) -> np.ndarray:
        """Integer latents -> the float latents the decoder takes (float32)."""
        if self.ladder is None:
            return latents.astype(np.float32)
        return self.ladder.dequantize(latents, quality)

    # -- decoder (torch) -------------------------------------------------------------
    def decoder(self):
        """The torch decoder, built on first use (this is where torch gets imported)."""
        if self.config.decoder_kind != "neural":
            raise ModelError(f"model {self.config.name} has a linear decoder (no torch network)")
        if self._decoder is None:
            import torch

            from .nets import Decoder

            cfg = self.config
            net = Decoder(cfg.latent_channels, cfg.coefficient_channels, cfg.decoder_width,
                          cfg.decoder_blocks, cfg.dims)
            state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in self._decoder_arrays.items()}
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:  # missing, unexpected or mis-shaped decoder arrays
                reason = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else "mismatch"
                raise ModelError(f"{self.source or cfg.name}: decoder arrays do not match the config "
                                 f"({reason})") from None
            net.eval()
            self._decoder = net
        return self._decoder

    # -- windowed processing -------------------------------------------------------------
    # Long signals (audio, huge images) are processed in windows along axis 1 so memory
    # stays bounded.  The WPT is periodized over the *whole* signal; a window therefore
    # reads its context modulo the length, and keeps only its interior.  Each latent
    # depends on samples within `analysis_margin` positions, and every sum is evaluated
    # in the same order whatever the window, so the latents are bit-identical to a
    # whole-signal transform, for any window size.
    @property
    def context_margin(self) -> int:
        """Latent positions of WPT context needed on each side (analysis or synthesis)."""
        taps = len(wavelets.filter_bank(self.config.wavelet)[0])
        block = self.config.block
        return -(-(taps - 1) * (block - 1) // block) + 1

    @property
    def decoder_radius(self) -> int:
        """Receptive radius of the decoder net in latent positions (one per 3-tap conv)."""
        if self.config.decoder_kind == "linear":  # the ladder's 3×3 filter reaches one position, its refiner two
            if self.ladder is None or self.ladder.filter is None:
                return 0
            # the wide filter reads the decoded values one cell around each position, as the first one does
            return self.ladder.refiner.RADIUS if self.ladder.refiner is not None else 1
        return 2 * self.config.decoder_blocks + 2

    def linear_map(self) -> tuple[np.ndarray, np.ndarray]:
        """The decoder's 1×1 linear path: weight (coefficient channels, L) and bias, float32."""
        weight = self._decoder_arrays["linear.weight"].reshape(self.config.coefficient_channels, -1)
        return weight.astype(np.float32), self._decoder_arrays["linear.bias"].astype(np.float32)

    def _linear_decoder(self, channels: np.ndarray | None = None, quality: int | None = None,
                        positions_major: bool = False) -> Callable[[np.ndarray], np.ndarray]:
        """float latents (L, …) -> coefficients: the 1×1 map alone, in numpy (no torch import).
        ``channels``: the latent channels the input holds (the others are all zero; they
        include the filters' first K, or K1, when the ladder has them).  ``quality``: the file's, for
        the ladder's filter (:mod:`walloc_cli.postfilter`), applied first.
        ``positions_major`` (images): (H', W', coefficients) in the order of
        :func:`wavelets.wpt2d_positions`, what the inverse transform reads — the product writes
        that layout directly instead of a channel-major array to be transposed and reordered
        (two copies of a photo's coefficients, about 5 % of its decode)."""
        weight, bias = self.linear_map()
        if channels is not None:
            weight = weight[:, channels]
        if positions_major:
            order = self._positions_order()
            weight, bias = np.ascontiguousarray(weight[order].T), bias[order]
        else:
            weight = np.ascontiguousarray(weight)
        refine: Callable[[np.ndarray], None] | None = None
        if self.ladder is not None and self.ladder.filter is not None and quality is not None:
            from . import postfilter

            k, k1 = self.ladder.filter_channels, self.ladder.filtered_channels  # k1 = k without the wide filter
            step = self.ladder.steps(quality)[:k1].astype(np.float32).reshape(k1, 1, 1)  # the filters work in steps
            anchor = int(self.ladder.anchor[quality])
            kernel, refiner, wide = self.ladder.filter[anchor], self.ladder.refiner, self.ladder.wide

            def refine(z: np.ndarray) -> None:
                scaled = z[:k1] / step
                if wide is not None:  # from the decoded values, before the refiner changes the first K
                    extra = wide.correction(scaled, anchor)
                    extra *= step[k:]
                scaled, step_k = scaled[:k], step[:k]
                if refiner is not None:  # the refiner includes the linear filter's term
                    z[:k] += postfilter.refine(scaled, refiner, anchor) * step_k
                else:
                    z[:k] += postfilter.correction(scaled, kernel) * step_k
                if wide is not None:
                    z[k:k1] += extra

        def run(z: np.ndarray) -> np.ndarray:
            if refine is not None:
                refine(z)
            flat = z.reshape(z.shape[0], int(np.prod(z.shape[1:])))  # no channels at all: a flat image
            if positions_major:
                out = flat.T @ weight
                out += bias
                return out.reshape(*z.shape[1:], weight.shape[1])
            return (weight @ flat + bias[:, None]).reshape(weight.shape[0], *z.shape[1:])

        return run

    def _synthesise_positions(self, coefficients: np.ndarray) -> np.ndarray:
        """(H', W', C·4^J) in :func:`wavelets.wpt2d_positions`' layout -> signal (C, H, W)."""
        hb, wb, _ = coefficients.shape
        block, colours = self.config.block, self.config.channels
        image = wavelets.iwpt2d_positions(coefficients.reshape(hb, wb, colours, block, block), self.config.levels,
                                          self.config.wavelet)
        return image.transpose(2, 0, 1)

    def _neural_decoder(self) -> Callable[[np.ndarray], np.ndarray]:
        import torch

        net = self.decoder()

        def run(z: np.ndarray) -> np.ndarray:
            # Inference mode is entered per call and left before returning: from_latents
            # is a generator, and one suspended inside it would leave the caller's thread
            # in inference mode.  One intra-op thread, always: torch's convolutions split
            # their sums differently with more threads, which moved decoded pixels by 1
            # between `-j 1` and `-j 2` (and between machines with other core counts); one
            # thread was also faster on this 2-core machine (95 vs 106 ms for 768×512).
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.inference_mode():
                    return net(torch.from_numpy(np.ascontiguousarray(z))[None])[0].numpy()
            finally:
                torch.set_num_threads(threads)

        return run

    def to_latents(self, read: Callable[[np.ndarray], np.ndarray], length: int, chunk: int,
                   quality: int | None = None, scaled: bool = False, start: int = 0,
                   stop: int | None = None) -> np.ndarray:
        """Integer latents of a signal of ``length`` samples along axis 1.

        ``read(index)`` returns the signal in model units at the sample positions
        ``index`` (all within ``0 .. length-1``) along axis 1; ``length`` is a
        multiple of ``block``; ``chunk`` is the number of latent positions per window.
        ``start``/``stop``: only latent positions ``start … stop − 1`` (one strip of an
        image), the same values as those positions of the whole.
        ``scaled``: float32 latents before rounding (see :meth:`latents_of_window`).
        """
        block, margin = self.config.block, self.context_margin
        positions = length // block
        stop = positions if stop is None else stop
        if start == 0 and stop == positions and positions <= chunk:
            # one window holds everything: the periodic transform needs no margin
            return self.latents_of_window(read(np.arange(length)), quality, scaled)
        out = None
        for p0 in range(start, stop, chunk):
            p1 = min(stop, p0 + chunk)
            index = np.arange((p0 - margin) * block, (p1 + margin) * block) % length
            z = self.latents_of_window(read(index), quality, scaled)[:, margin : margin + p1 - p0]
            if out is None:  # filled in place: long audio holds its latents once, not twice
                out = np.empty((z.shape[0], stop - start) + z.shape[2:], z.dtype)
            out[:, p0 - start : p1 - start] = z
        return out

    def from_latents(self, latents: np.ndarray, chunk: int, quality: int | None = None) -> Iterator[np.ndarray]:
        """Reconstructed signal (C, samples, ...) float32, yielded window by window along axis 1.

        The decoder runs on contiguous runs of latents with its own receptive
        radius of context (zero padding only at the true ends, as in training);
        the inverse WPT then gets `context_margin` positions of decoded
        coefficients on each side, wrapped around the ends as periodization needs.
        """
        if self.config.decoder_kind == "linear":
            images = self.config.dims == 2  # images: the product writes the inverse transform's layout
            nonzero = None
            if self.ladder is not None and isinstance(latents, np.ndarray) and latents.ndim > 1:
                nonzero = latents.reshape(latents.shape[0], -1).any(axis=1)
            elif self.ladder is not None and getattr(latents, "nonzero", None) is not None:
                nonzero = latents.nonzero.copy()  # a strip-coded file's (StripLatents): its zero-channel flags say
            if nonzero is not None:
                # Channels all zero in the whole file (most of a photo's 192 at q ≤ 75) add nothing:
                # the product and the dequantization skip them, the same set for every window and
                # for a file whether or not it is cut into strips (float products round by their
                # shape) — but the filters' first K (or K1), which they may fill
                nonzero[: self.ladder.filtered_channels] = True
                used = np.flatnonzero(nonzero)
                decode = self._linear_decoder(used, quality, positions_major=images)
                subset = latents[used] if isinstance(latents, np.ndarray) else latents.select(used)
                return self._windows(subset, chunk, quality, decode, used, images)
            return self._windows(latents, chunk, quality, self._linear_decoder(None, quality, images), None, images)
        return self._windows(latents, chunk, quality, self._neural_decoder(), None)

    def _windows(self, latents: np.ndarray, chunk: int, quality: int | None, decode: Callable[[np.ndarray], np.ndarray],
                 channels: np.ndarray | None, positions_major: bool = False) -> Iterator[np.ndarray]:
        """:meth:`from_latents` once its decoder is chosen; ``channels``: the latent channels
        ``latents``' rows are (None: all); ``positions_major``: ``decode`` returns
        (H', W', coefficients) (:meth:`_linear_decoder`), else (coefficients, H', …)."""
        positions = latents.shape[1]
        margin, radius, block = self.context_margin, self.decoder_radius, self.config.block
        axis = 0 if positions_major else 1  # the latent-row axis of decode's result
        synthesise = self._synthesise_positions if positions_major else self.synthesise

        def dequantize(z: np.ndarray) -> np.ndarray:
            if channels is None:
                return self.dequantize(z, quality)
            return self.ladder.dequantize(z, quality, channels)

        if positions <= chunk:  # one window: the periodic inverse needs no margin
            whole = latents if isinstance(latents, np.ndarray) else latents[:, 0:positions]  # a strip-coded file's
            yield synthesise(decode(dequantize(whole)))
            return
        for q0 in range(0, positions, chunk):
            q1 = min(positions, q0 + chunk)
            needed = np.arange(q0 - margin, q1 + margin) % positions
            ordered = np.sort(needed)  # each position is decoded once
            distinct = ordered[np.concatenate(([True], np.diff(ordered) != 0))]
            parts = []
            for a, b in contiguous_runs(distinct):
                lo, hi = max(0, a - radius), min(positions, b + radius)
                parts.append(np.take(decode(dequantize(latents[:, lo:hi])), np.arange(a - lo, b - lo), axis=axis))
            coefficients = np.take(np.concatenate(parts, axis=axis), np.searchsorted(distinct, needed), axis=axis)
            # The inverse WPT runs in numpy: torch's strided slicing is several times
            # slower for some shapes (measured 0.08 s vs 0.35–3 s on a 481×321 photo).
            signal = synthesise(coefficients)
            yield signal[:, margin * block : (margin + q1 - q0) * block]


def array_of(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Array ``key`` of a weights file, checked to exist, be finite and (given ``shape``) have that shape."""
    if key not in arrays:
        raise ModelError(f"array {key!r} missing")
    a = arrays[key]
    if shape is not None and a.shape != shape:
        raise ModelError(f"array {key!r} has shape {a.shape}, expected {shape}")
    return a


def int_array(arrays: dict[str, np.ndarray], key: str, dtype: type) -> np.ndarray:
    """Integer array ``key`` of a weights file as ``dtype``: refused if it holds floats or
    values that ``dtype`` cannot hold (a cast would silently wrap or truncate them)."""
    a = array_of(arrays, key)
    if a.dtype.kind not in "iu":
        raise ModelError(f"array {key!r} holds {a.dtype}, expected integers")
    info = np.iinfo(dtype)
    if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
        raise ModelError(f"array {key!r} holds values outside {np.dtype(dtype).name}")
    return a.astype(dtype, copy=False)


def check_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Every array of a weights file holds finite numbers (no strings, NaN or infinities):
    a NaN weight would round to arbitrary latents rather than fail."""
    for key, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ModelError(f"array {key!r} holds {a.dtype}, not numbers")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ModelError(f"array {key!r} holds NaN or infinite values")


def dead_zone_round(y: np.ndarray, deadzone: float) -> np.ndarray:
    """Dead-zone rounding of latents in units of their steps (int64): a value leaves 0 only
    at 0.5 + ``deadzone`` steps — fewer bits for nearly the same PSNR.  The ladder fit
    rounds its training latents with this same function."""
    return (np.sign(y) * np.floor(np.abs(y) + (0.5 - deadzone))).astype(np.int64)


_DEQUANTIZE_TABLE = 1 << 12  # most distinct latent values QualityLadder.dequantize tabulates


class QualityLadder:
    """How a ladder model turns a quality 1–100 into quantization and entropy tables.

    ``step[q]`` (float) and per-anchor channel ``gain`` set the quantization
    steps; only the *encoder* and the dequantizer use those floats.  The entropy
    decoder needs just the integer ``anchor[q]`` (which table set), the integer
    context thresholds and the integer tables, so decoding is bit-exact.  ``filter``
    (anchors, K, 9·K), optional: the decoder's 3×3 filter over the first K channels
    (:mod:`walloc_cli.postfilter`), and ``refiner``, optional, its nonlinear successor that
    includes it (``postfilter.Refiner``); ``wide``, optional (``postfilter.WideFilter``), a low-rank
    3×3 filter of the next channels (K … K1 − 1) from the first K1.  ``pyramid``, optional: the DC
    channels' tables for context coder version 3 (:mod:`walloc_cli.pyramid`), rows (anchor, DC
    channel, table).
    """

    def __init__(self, step: np.ndarray, anchor: np.ndarray, gain: np.ndarray, deadzone: float,
                 offset: np.ndarray, thresholds: np.ndarray, tables: "RaggedTables", depth: int,
                 lifted: int, neighbour_cuts: tuple[int, ...], filter: np.ndarray | None = None,
                 pyramid: "RaggedTables | None" = None, refiner: "Refiner | None" = None,
                 pyramid_pairs: bool = False, diagonal_cuts: tuple[int, ...] = (),
                 wide: "WideFilter | None" = None) -> None:
        self.step, self.anchor, self.gain = step, anchor, gain
        self.deadzone, self.offset = deadzone, offset
        self.thresholds, self.tables, self.depth, self.lifted = thresholds, tables, depth, lifted
        self.neighbour_cuts = neighbour_cuts
        self.diagonal_cuts = diagonal_cuts  # context coder version 5 (entropy.phases)
        self.filter = filter
        self.pyramid = pyramid
        self.pyramid_pairs = pyramid_pairs  # context coder version 4 (pyramid.PAIR_CUTS)
        self.refiner = refiner
        self.wide = wide

    @property
    def filter_channels(self) -> int:
        """K, the leading channels the decoder's filter refines (0: no filter)."""
        return 0 if self.filter is None else self.filter.shape[1]

    @property
    def filtered_channels(self) -> int:
        """The leading channels the decoder's filters read or write (K, or K1 with the wide
        filter): the decoder keeps them even where a file holds only zeros."""
        return self.filter_channels if self.wide is None else max(self.filter_channels, self.wide.channels)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], config: ModelConfig) -> "QualityLadder":
        """The ladder of a weights file, every array checked against the config (ModelError says which)."""
        from .entropy import RaggedTables, tables_per_channel

        tables = RaggedTables(int_array(arrays, "context.lo", np.int32), int_array(arrays, "context.size", np.int32),
                              int_array(arrays, "context.offset", np.int64), int_array(arrays, "context.freqs", np.int32))
        tables.validate()
        channels, bins = config.latent_channels, config.context_bins
        thresholds = int_array(arrays, "context.thresholds", np.int64)
        if thresholds.ndim != 3 or thresholds.shape[1:] != (channels, bins - 1) or thresholds.shape[0] < 1:
            raise ModelError(f"array 'context.thresholds' has shape {thresholds.shape}, expected "
                             f"(anchors, {channels}, {bins - 1})")
        if (np.diff(thresholds, axis=2) < 0).any():  # the decoder bins by binary search (entropy.context_bins)
            raise ModelError("array 'context.thresholds' must be non-decreasing along its last axis")
        anchors = thresholds.shape[0]
        step = array_of(arrays, "quality.step", (101,)).astype(np.float64)
        anchor = int_array(arrays, "quality.anchor", np.int64)
        gain = array_of(arrays, "quality.gain", (anchors, channels)).astype(np.float64)
        offset = array_of(arrays, "quality.offset", (anchors, channels)).astype(np.float64)
        deadzone = array_of(arrays, "quality.deadzone", ())
        if anchor.shape != (101,) or anchor.min() < 0 or anchor.max() >= anchors:
            raise ModelError(f"array 'quality.anchor' must hold 101 table-set indices below {anchors}")
        if step[1:].min() <= 0 or gain.min() <= 0:
            raise ModelError("arrays 'quality.step' and 'quality.gain' must be positive")
        if not 0 <= float(deadzone) < 0.5 or offset.min() <= -0.5 or offset.max() >= 1:
            raise ModelError("array 'quality.deadzone' must lie in [0, 0.5) and 'quality.offset' in (-0.5, 1)")
        per_channel = tables_per_channel(bins, config.neighbour_cuts, config.diagonal_cuts)
        if per_channel >= 1 << 15:  # table indices are int16 (entropy)
            raise ModelError("more than 32767 context tables per channel")
        rows = anchors * channels * per_channel
        if tables.lo.shape[0] != rows:
            raise ModelError(f"context tables have {tables.lo.shape[0]} rows, the config asks for {rows}")
        filter = None
        if "quality.filter" in arrays:
            from .postfilter import TAPS

            filter = array_of(arrays, "quality.filter").astype(np.float32)
            if (filter.ndim != 3 or filter.shape[0] != anchors or not 1 <= filter.shape[1] <= channels
                    or filter.shape[2] != TAPS * TAPS * filter.shape[1]):
                raise ModelError(f"array 'quality.filter' has shape {filter.shape}, expected "
                                 f"({anchors}, K, {TAPS * TAPS}·K) with K ≤ {channels}")
        refiner = None
        if "quality.refine.a" in arrays:
            from .postfilter import Refiner

            if filter is None:
                raise ModelError("arrays 'quality.refine.*' need 'quality.filter'")
            keys = ("a", "a_bias", "b", "b_bias", "c", "c_bias")
            try:
                refiner = Refiner.from_arrays({f"refine.{k}": array_of(arrays, f"quality.refine.{k}") for k in keys},
                                              filter)
            except ValueError as error:
                raise ModelError(str(error)) from None
        wide = None
        if "quality.wide.in" in arrays or "quality.wide.out" in arrays:
            from .postfilter import WideFilter

            if filter is None:
                raise ModelError("arrays 'quality.wide.*' need 'quality.filter'")
            into, out = (array_of(arrays, f"quality.wide.{k}").astype(np.float32) for k in ("in", "out"))
            k = filter.shape[1]
            try:
                wide = WideFilter(into, out)
            except ValueError as error:
                raise ModelError(str(error)) from None
            if into.shape[0] != anchors or wide.first != k or wide.channels > channels:
                raise ModelError(f"arrays 'quality.wide.*' have shapes {into.shape} and {out.shape}, expected "
                                 f"({anchors}, r, 9·K1) and ({anchors}, K1 − {k}, r) with {k} < K1 ≤ {channels}")
        pyramid, pairs = None, False
        if "pyramid.lo" in arrays:
            from .pyramid import tables_per_channel

            pyramid = RaggedTables(int_array(arrays, "pyramid.lo", np.int32), int_array(arrays, "pyramid.size", np.int32),
                                   int_array(arrays, "pyramid.offset", np.int64),
                                   int_array(arrays, "pyramid.freqs", np.int32))
            pyramid.validate()
            # "pyramid.pairs" (a 1-element array, 1): tables also by the neighbour pairs' disagreement
            pairs = "pyramid.pairs" in arrays and bool(int_array(arrays, "pyramid.pairs", np.int32).any())
            rows = anchors * config.lifted_channels * tables_per_channel(pairs)
            if pyramid.lo.shape[0] != rows or rows == 0:
                raise ModelError(f"pyramid tables have {pyramid.lo.shape[0]} rows, the config asks for {rows}")
        return cls(step, anchor, gain, float(deadzone), offset, thresholds, tables, config.context_depth,
                   config.lifted_channels, config.neighbour_cuts, filter, pyramid, refiner, pairs, config.diagonal_cuts,
                   wide)

    def check(self, quality: int | None) -> int:
        return check_quality(quality)

    def steps(self, quality: int) -> np.ndarray:
        """Per-channel quantization steps (L,) at this quality."""
        q = self.check(quality)
        return self.step[q] * self.gain[self.anchor[q]]

    def scale(self, z: np.ndarray, quality: int) -> np.ndarray:
        """Float latents (L, ...) -> in units of their quantization steps (what gets rounded)."""
        return z / self.steps(quality).reshape(-1, *([1] * (z.ndim - 1)))

    def round_scaled(self, y: np.ndarray) -> np.ndarray:
        return dead_zone_round(y, self.deadzone)

    def quantize(self, z: np.ndarray, quality: int) -> np.ndarray:
        return self.round_scaled(self.scale(z, quality))

    def dequantize(self, latents: np.ndarray, quality: int, channels: np.ndarray | None = None) -> np.ndarray:
        """Reconstruct each value at its bin's expected position (slightly toward zero).
        ``channels``: which latent channels ``latents``' rows are (default: all, in order)."""
        q = self.check(quality)
        shape = (-1, *([1] * (latents.ndim - 1)))
        steps, offset = self.steps(q), self.offset[self.anchor[q]]
        if channels is not None:
            steps, offset = steps[channels], offset[channels]
        steps, offset = steps.reshape(shape), offset.reshape(shape)
        low, high = (int(latents.min()), int(latents.max())) if latents.size else (0, 0)
        span = high - low + 1
        if (latents.ndim > 1 and span <= _DEQUANTIZE_TABLE and latents.shape[0] * span < latents.size
                and -(1 << 30) < low and high < 1 << 30):
            # Latents are small integers: the same formula on every value each channel holds,
            # once, then a table lookup per latent (3 passes over them instead of 7; the same
            # float64 arithmetic per value, so the same float32 results)
            values = np.arange(low, high + 1, dtype=latents.dtype)
            table = (np.sign(values) * np.maximum(np.abs(values) - offset.reshape(-1, 1), 0)
                     * steps.reshape(-1, 1)).astype(np.float32)
            index = np.subtract(latents, low, dtype=np.int32)
            index += (np.arange(latents.shape[0], dtype=np.int32) * span).reshape(shape)
            return table.reshape(-1).take(index)
        return (np.sign(latents) * np.maximum(np.abs(latents) - offset, 0) * steps).astype(np.float32)

    CHOICES = (-2, -1, 0, 1, 2)  # table sets a channel may pick: its quality's anchor and neighbours

    def table_sets(self, quality: int) -> list[tuple[int, np.ndarray]]:
        """Candidate (first table row, integer context thresholds (L, bins − 1)) per channel.

        The quality's own anchor and its neighbours (clipped at the ends of the
        ladder): the encoder picks per channel and sends the pick.
        """
        from .entropy import tables_per_channel

        anchors, channels, cuts = self.thresholds.shape
        per_channel = tables_per_channel(cuts + 1, self.neighbour_cuts, self.diagonal_cuts)
        return [(p * channels * per_channel, self.thresholds[p]) for p in self._picks(quality)]

    def _picks(self, quality: int) -> list[int]:
        """The anchors of :meth:`table_sets`, in the order of :attr:`CHOICES`."""
        a, anchors = int(self.anchor[self.check(quality)]), self.thresholds.shape[0]
        return [min(max(a + d, 0), anchors - 1) for d in self.CHOICES]

    def dc_pyramid(self, quality: int) -> DcPyramid | None:
        """The DC channels' pyramid tables for the candidate sets of :meth:`table_sets` (None:
        this ladder has none, and its files code the DC through the Haar levels)."""
        from .pyramid import tables_per_channel

        if self.pyramid is None:
            return None
        per_anchor = self.lifted * tables_per_channel(self.pyramid_pairs)
        return DcPyramid(self.pyramid, tuple(p * per_anchor for p in self._picks(quality)), self.pyramid_pairs)


def contiguous_runs(index: np.ndarray) -> list[tuple[int, int]]:
    """Split a sequence of positions into maximal runs of consecutive integers [a, b)."""
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(index, breaks)]


@lru_cache(maxsize=8)
def load_model(name: str) -> CodecModel:
    """Load a model by name, checking its weights against the hash in its config."""
    models = available_models()
    if name not in models:
        known = ", ".join(sorted(models)) or "none installed"
        raise ModelError(f"unknown model {name!r} (available: {known})")
    return load_config(models[name], name)


PREVIOUS = "previous"  # weights/previous/<name>.<short hash>.json: earlier weights kept for old files


def previous_weights(name: str, short_hash: str) -> Path | None:
    """The config of an earlier version of model ``name`` whose weights hash starts ``short_hash``,
    kept so that files written with it still decode after the model is refitted."""
    if not isinstance(short_hash, str) or not re.fullmatch(r"[0-9a-f]{16}", short_hash):
        return None  # what a file's header says is untrusted: only a hash can name a file here
    for d in weights_dirs():
        path = d / PREVIOUS / f"{name}.{short_hash}.json"
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=8)
def _load_previous(path: Path, name: str) -> CodecModel:
    return load_config(path, name)


PARALLEL_INFLATE_BYTES = 1 << 20  # smaller weights files inflate in a few ms: no threads


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (never unpickled), as ``np.load`` gives them.

    Why not ``np.load`` itself: inflating rgb-1x's 5.4 MB of weights with zlib was 60 ms of every
    ``walloc`` command that loads them (a third of a one-photo encode's start-up); ISA-L (the
    ``isal`` package, already used to write PNG) inflates the same deflate streams in about half
    the time.  Members are read here from their zip local headers; anything this does not handle
    (no ``isal``, another compression method) goes through ``np.load``.  No CRC is checked: the
    caller has checked the whole file's SHA-256.  Large members are inflated on two threads
    (ISA-L releases the GIL): rgb-1x's 22 MB of tables took 41–57 ms on one core of this
    machine, 26–32 ms on two — start-up every command pays, nothing spins afterwards."""
    try:
        from isal import isal_zlib
    except ImportError:
        isal_zlib = None
    members_read: list[tuple[zipfile.ZipInfo, bytes]] = []
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if isal_zlib is None or any(m.compress_type not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED) or
                                    not m.filename.endswith(".npy") for m in members):
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        with open(path, "rb") as f:
            for m in members:
                f.seek(m.header_offset)
                local = f.read(30)
                if local[:4] != b"PK\x03\x04":
                    raise zipfile.BadZipFile(f"bad local header for {m.filename}")
                f.seek(int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little"), 1)
                members_read.append((m, f.read(m.compress_size)))

    def inflate(member: tuple[zipfile.ZipInfo, bytes]) -> bytes:
        m, raw = member
        try:
            data = isal_zlib.decompress(raw, wbits=-15) if m.compress_type == zipfile.ZIP_DEFLATED else raw
        except isal_zlib.error as exc:  # not an OSError or ValueError: said the same way as theirs
            raise zipfile.BadZipFile(f"{m.filename}: {exc}") from None
        if len(data) != m.file_size:
            raise zipfile.BadZipFile(f"{m.filename}: {len(data)} bytes, not {m.file_size}")
        return data

    if sum(len(raw) for _, raw in members_read) >= PARALLEL_INFLATE_BYTES and available_cores() > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            inflated = list(pool.map(inflate, members_read))
    else:
        inflated = [inflate(member) for member in members_read]
    return {m.filename[: -len(".npy")]: _npy_view(data) for (m, _), data in zip(members_read, inflated)}


def _npy_view(data: bytes) -> np.ndarray:
    """The array of a ``.npy`` file's bytes, read-only and without a copy (``read_array`` copied
    rgb-1x's 22 MB of tables once more: 10–13 ms of every command); object arrays are refused,
    as ``allow_pickle=False`` refuses them."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):  # version 3 (UTF-8 field names): numpy's own reader
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(stream)
    if dtype.hasobject:
        raise ValueError("object arrays cannot be loaded without pickle")
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(data, dtype, count=count, offset=stream.tell())
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)



def load_config(config_path: Path, name: str) -> CodecModel:
    """Load the model whose config is ``config_path`` (its weights beside it, same stem)."""
    try:
        config = ModelConfig.from_json(json.loads(config_path.read_text()))
    except (ValueError, KeyError, TypeError, RecursionError, UnicodeDecodeError, OSError) as exc:
        raise ModelError(f"{config_path}: unreadable model config ({exc})") from None
    if config.name != name:
        raise ModelError(f"{config_path}: field 'name' is {config.name!r}, but the file is named {name!r}")
    npz = config_path.with_suffix(".npz")
    if not npz.exists():
        raise ModelError(f"{npz}: weights file missing")
    digest = file_sha256(npz)
    if digest != config.sha256:
        raise ModelError(f"{npz}: weights do not match their recorded SHA-256 (corrupted or replaced)")
    try:
        arrays = read_npz(npz)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{npz}: unreadable weights ({exc})") from None
    loader = FAMILIES.get(config.family)
    if loader is None:
        raise ModelError(f"{config_path}: unknown model family {config.family!r}")
    try:
        check_arrays(arrays)
        model = loader(config, json.loads(config_path.read_text()), arrays)
    except ModelError as exc:
        raise ModelError(f"{npz}: {exc}") from None
    # Anything else a family's loader raises means the arrays and the JSON disagree (a shape,
    # a count, a parameter that divides): one line naming the file, never a traceback.
    except (KeyError, ValueError, TypeError, IndexError, ArithmeticError, AttributeError) as exc:
        raise ModelError(f"{npz}: weights do not match {config_path.name} ({type(exc).__name__}: {exc})") from None
    if isinstance(model, CodecModel):
        model.source = npz
    return model


def _load_audio_ladder(config: ModelConfig, raw: dict[str, Any], arrays: dict[str, np.ndarray]):
    from . import audio_ladder

    check_field_types(raw, audio_ladder.LadderParams)
    return audio_ladder.load(config, raw, arrays)


def check_field_types(raw: dict[str, Any], recipe: type) -> None:
    """Each field of the dataclass ``recipe`` present in a model's JSON has its annotated kind:
    ``int`` an integer, ``float`` a finite number, ``tuple[int, ...]`` a list of integers
    (a string where a number belongs would otherwise surface as a numpy error mid-decode)."""
    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**31

    for key, spec in recipe.__dataclass_fields__.items():
        if key not in raw:
            continue
        kind, value = str(spec.type), raw[key]
        if kind == "int":
            ok = integer(value)
        elif kind == "float":
            ok = (integer(value) or isinstance(value, float)) and np.isfinite(value)
        elif kind.startswith("tuple[int"):
            ok = isinstance(value, list) and all(integer(v) for v in value) and len(value) < 1 << 16
        else:
            continue
        if not ok:
            raise ModelError(f"field {key!r} is {value!r}, expected {kind}")


def _load_multiband(config: ModelConfig, raw: dict[str, Any], arrays: dict[str, np.ndarray]):
    from . import multiband

    return multiband.load(config, raw, arrays)


# Model families by the "family" key of a model's JSON: each is one module behind the same
# small interface (encode signals -> bytes, bytes -> signals, integer tables in the weights).
FAMILIES: dict[str, Callable[..., Any]] = {
    "autoencoder": lambda config, raw, arrays: CodecModel(config, arrays),
    "audio-ladder": _load_audio_ladder,
    "multiband": _load_multiband,
}


def find_model(name: str, short_hash: str) -> CodecModel:
    """The model a file was written with; refuses a different version of the weights."""
    model = load_model(name)
    if model.config.short_hash != short_hash:
        previous = previous_weights(name, short_hash)
        if previous is not None:
            earlier = _load_previous(previous, name)
            if earlier.config.short_hash == short_hash:
                return earlier
        raise ModelError(
            f"written with model {name} weights {short_hash}, but the installed {name} is "
            f"{model.config.short_hash}"
        )
    return model


def save_model(directory: Path, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``<name>.npz`` and ``<name>.json`` (with the npz's SHA-256)."""
    directory.mkdir(parents=True, exist_ok=True)
    npz = directory / f"{config['name']}.npz"
    tmp = npz.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(npz)
    config = {**config, "sha256": file_sha256(npz)}
    (directory / f"{config['name']}.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    return npz
