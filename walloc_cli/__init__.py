"""walloc: WaLLoC (Wavelet Learned Lossy Compression) as a command-line codec and Python API.

Importing this package does not import torch: encoding needs only numpy,
pywavelets and constriction; torch is loaded when a decoder runs.
"""
__version__ = "0.1.0"
