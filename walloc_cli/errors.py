"""The one exception type that the API raises for bad input or bad files.

Every failure a user can cause — an unreadable image, a truncated or corrupted
``.wlc`` file, an unknown model — is a :class:`WallocError` whose message is a
single line that makes sense after the file name.  The CLI prints exactly
that line and exits 1; anything else escaping is a bug in walloc.
"""


class WallocError(Exception):
    """Bad input, a bad file, or a missing/corrupted model (one-line message)."""


QUALITY_RANGE = (1, 100)


def check_quality(quality: object) -> int:
    """The one rule every quality ladder (images, audio, N-band) applies to ``-q``: an integer
    from 1 to 100 (bools and floats refused, so ``-q 50.5`` cannot silently round)."""
    import numpy as np  # local: keeps this module importable by everything at no cost

    low, high = QUALITY_RANGE
    if quality is None or isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not low <= quality <= high:
        raise WallocError(f"quality must be an integer from {low} to {high}, got {quality!r}")
    return int(quality)
