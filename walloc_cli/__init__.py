"""walloc: WaLLoC (Wavelet Learned Lossy Compression) as a command-line codec and Python API.

Importing this package does not import torch: encoding needs only numpy,
pywavelets and constriction; torch is loaded when a decoder runs.
"""
__version__ = "0.1.0"


# -- the short API (walloc_cli.simple): encode, decode, to_latents, from_latents --------------------
# Re-exported lazily (PEP 562) so that `import walloc_cli` stays numpy-only: simple imports
# api and media on first use, and torch only when a decoder runs.
_SIMPLE_API = ("encode", "decode", "to_latents", "from_latents")


def __getattr__(name: str):
    if name in _SIMPLE_API:
        from . import simple

        return getattr(simple, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SIMPLE_API))
