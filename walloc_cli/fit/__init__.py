"""Fitting and training: how the shipped weights are made (never imported by encoding or decoding).

Each module writes a model's weights (``weights/<name>.json`` + ``.npz``) that the codec's
modules only *read*: ``ladder`` fits ``rgb-1x`` (transform, steps, tables, DC pyramid, decoder
filter), ``refiner`` trains its nonlinear refiner, ``audio`` fits the audio ladder, ``train``
trains the autoencoders (``rgb-16x``, ``stereo-ms``) and ``export`` turns a training run into
weights.  The dependency runs one way: these modules import the codec; nothing in the codec
imports them.
"""
