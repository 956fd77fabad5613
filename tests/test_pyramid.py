"""The DC channels' interpolation pyramid (context coder versions 3 and 4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from walloc_cli import api, entropy, pyramid
from walloc_cli.model import load_model

LADDER = "rgb-1x"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def photo() -> tuple[None, np.ndarray]:
    return None, np.asarray(Image.open(DATA / "photo.jpg").convert("RGB"))


SHAPES = [(1, 1), (1, 7), (5, 1), (2, 2), (3, 5), (41, 61), (64, 96), (130, 257)]


@pytest.mark.parametrize("shape", SHAPES)
def test_plan_fills_every_position_once_from_known_neighbours(shape):
    """Each step's neighbours were all filled by earlier steps, and every position is filled once:
    the decoder can always compute a prediction before it needs it."""
    height, width = shape
    known = np.zeros(height * width, bool)
    for positions, neighbours, stage in pyramid.plan(height, width):
        assert 0 <= stage < pyramid.STAGES
        assert not known[positions].any()
        if neighbours is not None:
            assert neighbours.shape == (4, positions.size)
            assert known[neighbours].all()
        known[positions] = True
    assert known.all()


@pytest.mark.parametrize("pairs", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_synthesise_inverts_analyse(shape, pairs):
    rng = np.random.default_rng(sum(shape))
    channel = rng.integers(-300, 300, size=shape)
    steps = pyramid.analyse(channel, pairs)
    assert all(((w >= 0) & (w < pyramid.tables_per_channel(pairs))).all() for w, _ in steps)
    fed = iter(steps)

    def decode_step(first: int, bins: np.ndarray) -> np.ndarray:
        which, residuals = next(fed)
        np.testing.assert_array_equal(first + bins, which)  # the decoder picks the encoder's tables
        return residuals

    np.testing.assert_array_equal(pyramid.synthesise(height=shape[0], width=shape[1], decode_step=decode_step,
                                                     limit=1 << 31, pairs=pairs), channel)


def test_pair_contexts_split_each_spread_bin_by_the_pairs_disagreement():
    """Version 4 predicts as version 3 does; its table is version 3's, split in PAIR_BINS by
    | |a − b| − |c − d| | of the two neighbour pairs — an edge through the value (one pair
    alike, the other not) lands in the last bin, a flat neighbourhood in the first."""
    rng = np.random.default_rng(7)
    channel = rng.integers(-40, 40, size=(33, 47))
    for (w3, r3), (w4, r4) in zip(pyramid.analyse(channel), pyramid.analyse(channel, pairs=True)):
        np.testing.assert_array_equal(r3, r4)
        np.testing.assert_array_equal(w4 // pyramid.PAIR_BINS, w3)
    known = np.array([10, 10, 0, 20, 0], np.int64)          # pair (10, 10) alike, pair (0, 20) not
    neighbours = np.array([[0], [1], [2], [3]])
    prediction, table = pyramid.predict(known, neighbours, stage=1, pairs=True)
    assert prediction[0] == 10 and table[0] % pyramid.PAIR_BINS == pyramid.PAIR_BINS - 1
    flat = np.array([10, 10, 10, 10, 0], np.int64)
    assert pyramid.predict(flat, neighbours, stage=1, pairs=True)[1][0] % pyramid.PAIR_BINS == 0


def test_the_coder_version_follows_the_weights():
    """The shipped weights have diagonal cuts: they write version 5 and read no other (their tables
    are laid out for it); the weights before them (pair contexts, kept for their files) read and
    write version 4 only, and those before pair contexts version 3.  A header that names older
    weights with a newer coder is refused."""
    from walloc_cli import container
    from walloc_cli.errors import WallocError
    from walloc_cli.model import _load_previous, previous_weights

    model = load_model(LADDER)
    assert model.ladder.diagonal_cuts and api._coders(model) == (entropy.CONTEXT_CODER,)
    pairs = _load_previous(previous_weights(LADDER, "fb8588d7708dac72"), LADDER)
    assert pairs.ladder.pyramid_pairs and not pairs.ladder.diagonal_cuts
    assert api._coder(pairs) == entropy.CONTEXT_CODER_V4
    assert entropy.CONTEXT_CODER not in api._coders(pairs) and entropy.CONTEXT_CODER_V3 not in api._coders(pairs)
    old = _load_previous(previous_weights(LADDER, "900fc330744aeb4b"), LADDER)
    assert not old.ladder.pyramid_pairs and api._coder(old) == entropy.CONTEXT_CODER_V3
    assert entropy.CONTEXT_CODER_V4 not in api._coders(old)
    for name, newer in (("v6-rgb-1x-ctx3-900fc330-q20", entropy.CONTEXT_CODER_V4),
                        ("v8-rgb-1x-ctx4-fb8588d7-q20", entropy.CONTEXT_CODER)):
        golden = (DATA / "golden" / f"{name}.wlc").read_bytes()
        assert api.decode_image(golden).rgb.size > 0                     # as written: it decodes
        box = container.unpack(golden)
        forged = container.pack({**box.header, "coder": newer}, box.sections)
        with pytest.raises(WallocError, match="unsupported entropy coder"):
            api.decode_image(forged)


def _tables_for_layout(tables: entropy.RaggedTables, candidates: list, channels: int, old: int, new: int):
    """The same integer tables laid out with ``new`` tables a channel instead of ``old`` (table t
    of a channel reuses its table t mod ``old``): any valid tables will do for a round trip."""
    rows = np.array([(r // new) * old + (r % new) % old for r in range(tables.lo.size // old * new)])
    size = tables.size[rows]
    freqs = np.concatenate([tables.row(r) for r in rows])
    offset = np.concatenate(([0], np.cumsum(size + 1))).astype(np.int64)
    moved = entropy.RaggedTables(tables.lo[rows], size, offset, freqs)
    moved.validate()
    return moved, [(first // (channels * old) * channels * new, thresholds) for first, thresholds in candidates]


def test_diagonal_phase_round_trips_a_photo(photo):
    """Coder version 5 (entropy.phases: even/even, then odd/odd on their diagonal neighbours, then
    the white squares) codes a photo's latents exactly with the shipped tables, and with any
    valid tables of its layout: here the previous weights' (version 4) tables laid out anew,
    whose bytes then differ from version 4's."""
    from walloc_cli.model import _load_previous, previous_weights

    model = load_model(LADDER)
    ladder = model.ladder
    latents, _ = api.image_to_latents(model, photo[1], 50)
    sets, dc = ladder.table_sets(50), ladder.dc_pyramid(50)
    args = ladder.depth, ladder.lifted
    data = entropy.encode_with_context(latents, ladder.tables, sets, *args, None, ladder.neighbour_cuts,
                                       pyramid=dc, diagonal_cuts=ladder.diagonal_cuts)
    back = entropy.decode_with_context(data, ladder.tables, sets, ladder.depth, latents.shape, ladder.lifted,
                                       ladder.neighbour_cuts, pyramid=dc, diagonal_cuts=ladder.diagonal_cuts)
    np.testing.assert_array_equal(back, latents)

    previous = _load_previous(previous_weights(LADDER, "fb8588d7708dac72"), LADDER).ladder
    sets, dc = previous.table_sets(50), previous.dc_pyramid(50)
    cuts, diagonal, bins = previous.neighbour_cuts, (1, 2, 4, 8), previous.depth
    old = entropy.tables_per_channel(bins, cuts)
    tables, candidates = _tables_for_layout(previous.tables, sets, latents.shape[0], old,
                                            entropy.tables_per_channel(bins, cuts, diagonal))
    data = entropy.encode_with_context(latents, tables, candidates, bins, previous.lifted, None, cuts, pyramid=dc,
                                       diagonal_cuts=diagonal)
    back = entropy.decode_with_context(data, tables, candidates, bins, latents.shape, previous.lifted, cuts,
                                       pyramid=dc, diagonal_cuts=diagonal)
    np.testing.assert_array_equal(back, latents)
    assert data != entropy.encode_with_context(latents, previous.tables, sets, bins, previous.lifted, None, cuts,
                                               pyramid=dc)


def test_smooth_channels_leave_small_residuals():
    """A plane is predicted exactly away from the borders: what the Haar differences could not do."""
    i, j = np.mgrid[0:64, 0:96]
    plane = 3 * i + 2 * j
    residuals = np.concatenate([r for _, r in pyramid.analyse(plane)[1:]])
    assert np.mean(residuals == 0) > 0.9


def test_out_of_range_values_are_refused():
    steps = pyramid.analyse(np.array([[5, 1 << 20]]))
    fed = iter(steps)
    with pytest.raises(ValueError, match="out of range"):
        pyramid.synthesise(1, 2, lambda first, bins: next(fed)[1], limit=1000)


def test_the_pyramid_round_trips_and_beats_the_haar_levels_on_a_photo(photo):
    """The shipped model writes context coder version 5 (the pyramid, with pair contexts); its DC
    channels cost less than through the Haar levels (version 2), and both decode to the same latents."""
    model = load_model(LADDER)
    assert api._coder(model) == entropy.CONTEXT_CODER
    ladder = model.ladder
    latents, _ = api.image_to_latents(model, photo[1], 20)
    sets, dc = ladder.table_sets(20), ladder.dc_pyramid(20)
    sizes = {}
    for name, tables in (("haar", None), ("pyramid", dc)):
        for default in (None, 2):
            data = entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, default,
                                               ladder.neighbour_cuts, pyramid=tables,
                                               diagonal_cuts=ladder.diagonal_cuts)
            back = entropy.decode_with_context(data, ladder.tables, sets, ladder.depth, latents.shape, ladder.lifted,
                                               ladder.neighbour_cuts, pyramid=tables,
                                               diagonal_cuts=ladder.diagonal_cuts)
            np.testing.assert_array_equal(back, latents)
            sizes[name, default] = len(data)
    assert sizes["pyramid", 2] < sizes["haar", 2]
    assert sizes["pyramid", None] <= sizes["pyramid", 2]


def test_version_3_codes_extreme_values_and_skips_grey_channels():
    model = load_model(LADDER)
    ladder = model.ladder
    rng = np.random.default_rng(9)
    latents = rng.integers(-3, 4, size=(model.config.latent_channels, 6, 9)).astype(np.int32)
    latents[0, 0, 0], latents[0, 5, 8], latents[1, 3, 4] = 2**31 - 1, -(2**31) + 1, 99999
    sets, dc = ladder.table_sets(60), ladder.dc_pyramid(60)
    data = entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, None,
                                       ladder.neighbour_cuts, pyramid=dc, diagonal_cuts=ladder.diagonal_cuts)
    back = entropy.decode_with_context(data, ladder.tables, sets, ladder.depth, latents.shape, ladder.lifted,
                                       ladder.neighbour_cuts, pyramid=dc, diagonal_cuts=ladder.diagonal_cuts)
    np.testing.assert_array_equal(back, latents)
    skip = model.colour_only_channels
    grey = latents.copy()
    grey[skip] = 0
    data = entropy.encode_with_context(grey, ladder.tables, sets, ladder.depth, ladder.lifted, 2,
                                       ladder.neighbour_cuts, skip, pyramid=dc,
                                       diagonal_cuts=ladder.diagonal_cuts)
    back = entropy.decode_with_context(data, ladder.tables, sets, ladder.depth, grey.shape, ladder.lifted,
                                       ladder.neighbour_cuts, skip, pyramid=dc,
                                       diagonal_cuts=ladder.diagonal_cuts)
    np.testing.assert_array_equal(back, grey)


def test_version_3_payload_floor_still_stops_decompression_bombs():
    model = load_model(LADDER)
    ladder = model.ladder
    shape = (model.config.latent_channels, 2048, 2048)
    with pytest.raises(entropy.EntropyError, match="payload too short"):
        entropy.check_context_payload(8, ladder.tables, ladder.table_sets(50), shape, ladder.neighbour_cuts, None,
                                      True, ladder.lifted, ladder.dc_pyramid(50),
                                      diagonal_cuts=ladder.diagonal_cuts)


def test_garbled_version_3_payload_is_a_clean_error(photo):
    model = load_model(LADDER)
    ladder = model.ladder
    latents, _ = api.image_to_latents(model, photo[1], 30)
    sets, dc = ladder.table_sets(30), ladder.dc_pyramid(30)
    data = bytearray(entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, 2,
                                                 ladder.neighbour_cuts, pyramid=dc,
                                                 diagonal_cuts=ladder.diagonal_cuts))
    rng = np.random.default_rng(3)
    for _ in range(20):
        garbled = bytearray(data)
        garbled[int(rng.integers(0, 16))] ^= 1 << int(rng.integers(0, 8))
        try:
            back = entropy.decode_with_context(bytes(garbled), ladder.tables, sets, ladder.depth, latents.shape,
                                               ladder.lifted, ladder.neighbour_cuts, pyramid=dc,
                                               diagonal_cuts=ladder.diagonal_cuts)
        except entropy.EntropyError:
            continue
        assert back.shape == latents.shape


def test_weights_without_pyramid_tables_keep_writing_version_2():
    """Earlier weights (kept for their files) have no pyramid tables: they read and write up to
    version 2, and are never asked to read version 3."""
    from walloc_cli.model import _load_previous, previous_weights

    old = previous_weights(LADDER, "147523c243ddb786")
    assert old is not None
    model = _load_previous(old, LADDER)
    assert model.ladder.pyramid is None and model.ladder.dc_pyramid(50) is None
    assert api._coders(model) == entropy.CONTEXT_CODERS[:2]


def test_effort_1_searches_the_dc_table_sets(photo):
    """Every effort picks the DC channels' table sets (three channels: nearly free): never more
    bits for the DC than its quality's own set, the same latents decoded, and at low qualities,
    where the DC is most of a file, a different set wins for some channel.  Effort 1 codes with
    ``searched`` = :data:`rdoq.SEARCHED_CHANNELS` (the DC and the next channels)."""
    from walloc_cli import rdoq

    model = load_model(LADDER)
    ladder = model.ladder
    own = ladder.CHOICES.index(0)
    differs = False
    for quality in (5, 15, 25):
        latents, _ = api.image_to_latents(model, photo[1], quality)
        sets, dc = ladder.table_sets(quality), ladder.dc_pyramid(quality)

        def coded(searched: int) -> bytes:
            return entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, own,
                                               ladder.neighbour_cuts, pyramid=dc, diagonal_cuts=ladder.diagonal_cuts,
                                               searched=searched)

        fixed, dc_only = coded(0), coded(ladder.lifted)
        assert len(dc_only) <= len(fixed)
        assert api._encode_latents(model, latents, quality) == coded(rdoq.SEARCHED_CHANNELS)  # effort 1
        for data in (fixed, dc_only):
            back = entropy.decode_with_context(data, ladder.tables, sets, ladder.depth, latents.shape, ladder.lifted,
                                               ladder.neighbour_cuts, pyramid=dc, diagonal_cuts=ladder.diagonal_cuts)
            np.testing.assert_array_equal(back, latents)
        differs |= dc_only != fixed
    assert differs
