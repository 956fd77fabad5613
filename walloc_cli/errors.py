"""The one exception type that the API raises for bad input or bad files.

Every failure a user can cause — an unreadable image, a truncated or corrupted
``.wlc`` file, an unknown model — is a :class:`WallocError` whose message is a
single line that makes sense after the file name.  The CLI prints exactly
that line and exits 1; anything else escaping is a bug in walloc.
"""


class WallocError(Exception):
    """Bad input, a bad file, or a missing/corrupted model (one-line message)."""

