"""Dataset scale: `walloc latents -r/-j/--dtype/-n`, LatentFolder + DataLoader, and --dask on a LocalCluster."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader

from walloc_cli import api
from walloc_cli.cli import main
from walloc_cli.data import LatentFolder, pad_collate, worker_init
from walloc_cli.model import load_model

from .conftest import DATA


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("walloc: error:")]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A labelled set: two classes with the same file names, images of several sizes (cut from photo.jpg)."""
    root = tmp_path_factory.mktemp("set") / "images"
    photo = Image.open(DATA / "photo.jpg").convert("RGB")
    boxes = {"cat": [(0, 0, 64, 64), (40, 100, 104, 164), (200, 300, 280, 356)],
             "dog": [(10, 10, 74, 74), (100, 200, 164, 264)]}
    for label, crops in boxes.items():
        (root / label).mkdir(parents=True)
        for i, box in enumerate(crops):
            photo.crop(box).save(root / label / f"{i:04d}.png")
    return root


def files(root: Path, suffix: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(f"*{suffix}"))}


# -- walloc latents at dataset scale ------------------------------------------------------------------
def test_recursive_mirrors_class_folders_and_jobs_are_identical(tree, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r = run("latents", "-r", str(tree), "-o", f"{one}/", "--dtype", "int8")
    assert r.exit_code == 0, r.output
    assert run("latents", "-r", str(tree), "-o", f"{two}/", "--dtype", "int8", "-j", "2").exit_code == 0
    got = files(one, ".npy")
    assert sorted(got) == ["cat/0000.npy", "cat/0001.npy", "cat/0002.npy", "dog/0000.npy", "dog/0001.npy"]
    assert got == files(two, ".npy")
    z = np.load(one / "cat/0002.npy")
    assert z.dtype == np.int8 and z.shape == (12, 7, 10)
    rgb = np.asarray(Image.open(tree / "cat/0002.png").convert("RGB"))
    np.testing.assert_array_equal(z, api.image_to_latents(load_model("rgb-16x"), rgb)[0])


@pytest.mark.parametrize("dtype", ["int16", "int32", "float32"])
def test_dtypes_hold_the_same_values(tree, tmp_path, dtype):
    src = tree / "dog/0001.png"
    assert run("latents", str(src), "-o", str(tmp_path / "a.npy"), "--dtype", dtype).exit_code == 0
    assert run("latents", str(src), "-o", str(tmp_path / "b.npy"), "--dtype", "int8").exit_code == 0
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(a, b.astype(a.dtype))


def test_int8_refuses_values_that_do_not_fit(tree, tmp_path):
    src = tree / "cat/0000.png"
    r = run("latents", str(src), "-m", "rgb-1x", "-q", "95", "--dtype", "int8", "-o", str(tmp_path / "x.npy"))
    assert r.exit_code == 1
    [line] = error_lines(r)
    assert line.startswith(f"walloc: error: {src}: latents span ") and "outside int8's -128..127" in line
    assert "use --dtype int16" in line
    assert not (tmp_path / "x.npy").exists()
    r = run("latents", str(src), "--float", "--dtype", "int8", "-o", str(tmp_path / "x.npy"))
    assert r.exit_code == 2


def test_skip_existing_resumes_and_force_is_still_needed_to_replace(tree, tmp_path):
    out = tmp_path / "out"
    assert run("latents", "-r", str(tree), "-o", f"{out}/").exit_code == 0
    before = files(out, ".npy")
    (out / "dog/0000.npy").unlink()
    (out / "cat/0001.npy").write_bytes(b"kept")   # an existing output is never touched by -n
    r = run("latents", "-r", str(tree), "-o", f"{out}/", "-n", "-v")
    assert r.exit_code == 0, r.output
    assert "skipped 4 files" in r.stderr and "dog/0000" in r.stderr
    after = files(out, ".npy")
    assert after["dog/0000.npy"] == before["dog/0000.npy"] and after["cat/0001.npy"] == b"kept"
    r = run("latents", "-r", str(tree), "-o", f"{out}/", "-n")     # nothing left to do: done, not "no input"
    assert r.exit_code == 0 and "skipped 5 files" in r.stderr and "no input" not in r.stderr
    r = run("latents", "-r", str(tree), "-o", f"{out}/")
    assert r.exit_code == 1 and len(error_lines(r)) == 5 and all("--force" in e for e in error_lines(r))
    assert run("latents", "-r", str(tree), "-o", f"{out}/", "-n", "-f").exit_code == 2
    assert run("latents", "-r", str(tree), "-o", str(tmp_path / "x.npz")).exit_code == 2


def test_recursive_refuses_outputs_onto_inputs_and_reports_bad_files(tree, tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.png").write_bytes((tree / "cat/0000.png").read_bytes())
    (src / "a" / "y.jpg").write_bytes(b"not a photo")
    r = run("latents", "-r", str(src), "-o", f"{tmp_path / 'out'}/", "-j", "2")
    assert r.exit_code == 1
    assert error_lines(r) == [f"walloc: error: {src / 'a' / 'y.jpg'}: not an image walloc can read"]
    assert "latents of 1 of 2 files, 1 failed" in r.stderr
    assert (tmp_path / "out/a/x.npy").exists() and not list((tmp_path / "out").rglob("*.part"))
    # an .npy "input" is not taken by -r (only images, audio and .wlc), and x.wlc -> x.npy next to it works
    assert run("latents", "-r", str(src), "-n").exit_code == 1
    assert (src / "a" / "x.npy").exists()


# -- LatentFolder ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stores(tree) -> dict[str, Path]:
    base = tree.parent
    assert run("latents", "-r", str(tree), "-o", f"{base / 'npy'}/", "--dtype", "int8").exit_code == 0
    assert run("encode", "-r", str(tree), "-o", f"{base / 'wlc'}/", "-m", "rgb-16x").exit_code == 0
    return {"images": tree, "npy": base / "npy", "wlc": base / "wlc"}


def test_latent_folder_reads_images_wlc_and_npy_alike(stores):
    sets = {k: LatentFolder(v) for k, v in stores.items()}
    for ds in sets.values():
        assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
        assert ds.targets == [0, 0, 0, 1, 1] and len(ds) == 5
    for i in range(5):
        items = [ds[i] for ds in sets.values()]
        for x, label in items:
            assert x.dtype == torch.float32 and label == items[0][1]
            torch.testing.assert_close(x, items[0][0], rtol=0, atol=0)
    assert sets["npy"][2][0].shape == (12, 7, 10)


def test_wlc_of_another_model_is_an_error_naming_the_file(stores, tmp_path):
    from walloc_cli.errors import WallocError

    (tmp_path / "a").mkdir()
    assert run("encode", str(stores["images"] / "cat/0000.png"), "-o", str(tmp_path / "a/x.wlc")).exit_code == 0
    x, _ = LatentFolder(tmp_path)[0]           # rgb-1x, walloc encode's default: 192 dequantized channels
    assert x.shape == (192, 8, 8) and x.dtype == torch.float32
    with pytest.raises(WallocError, match=r"x\.wlc: written with model rgb-1x, not rgb-16x"):
        LatentFolder(tmp_path, model="rgb-16x")[0]


def test_fixed_size_crops_pads_and_standardises(stores):
    full = LatentFolder(stores["npy"])
    ds = LatentFolder(stores["npy"], size=(6, 8))
    x, _ = ds[2]                                  # 7×10 -> centre crop
    torch.testing.assert_close(x, full[2][0][:, 0:6, 1:9])
    big = LatentFolder(stores["npy"], size=10, padding_mode="constant")
    x, _ = big[0]                                 # 8×8 -> zero-padded, centred in whole cells
    assert x.shape == (12, 10, 10) and torch.equal(x[:, 1:9, 1:9], full[0][0]) and x[:, 0].abs().sum() == 0
    mean, std = full.channel_stats()
    z = LatentFolder(stores["npy"], mean=mean, std=std)
    stacked = torch.cat([z[i][0].reshape(12, -1) for i in range(len(z))], 1)
    torch.testing.assert_close(stacked.mean(1), torch.zeros(12), atol=1e-5, rtol=0)
    resized = LatentFolder(stores["npy"], size=4, resize=True)
    assert resized[2][0].shape == (12, 4, 4)


def test_training_augmentation_is_reproducible_and_changes_per_epoch(stores):
    full = LatentFolder(stores["npy"])
    ds = LatentFolder(stores["npy"], size=6, train=True, padding=1, seed=3)
    a = [ds[i][0] for i in range(5)]
    assert all(torch.equal(x, ds[i][0]) for i, x in enumerate(a))           # a function of (seed, epoch, index)
    ds.set_epoch(1)
    assert any(not torch.equal(x, ds[i][0]) for i, x in enumerate(a))
    # every training crop is a window of the (reflect-padded, maybe flipped) latents
    src = full[1][0]
    padded = torch.nn.functional.pad(src[None], (1, 1, 1, 1), mode="reflect")[0]
    x = ds[1][0]
    windows = [padded[:, i:i + 6, j:j + 6] for i in range(padded.shape[1] - 5) for j in range(padded.shape[2] - 5)]
    assert any(torch.equal(x, w) or torch.equal(x, w.flip(2)) for w in windows)


def test_variable_sizes_collate_with_padding(stores):
    ds = LatentFolder(stores["wlc"])
    x, labels, sizes = next(iter(DataLoader(ds, batch_size=5, collate_fn=pad_collate)))
    assert x.shape == (5, 12, 8, 10) and labels.tolist() == [0, 0, 0, 1, 1]
    assert sizes.tolist() == [[8, 8], [8, 8], [7, 10], [8, 8], [8, 8]]
    torch.testing.assert_close(x[2, :, :7, :10], ds[2][0])
    assert x[0, :, :, 8:].abs().sum() == 0


class ThreadProbe(LatentFolder):
    def __getitem__(self, index):
        from threadpoolctl import threadpool_info

        x, label = super().__getitem__(index)
        blas = max([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] or [1])
        return x, label, torch.get_num_threads(), blas


def test_dataloader_workers_run_one_thread_each(stores):
    ds = ThreadProbe(stores["images"], size=8, train=True)  # images: the numpy encoder runs in the workers
    dl = DataLoader(ds, batch_size=2, num_workers=2, worker_init_fn=worker_init, shuffle=True,
                    generator=torch.Generator().manual_seed(0))
    seen = []
    for x, label, torch_threads, blas_threads in dl:
        assert x.shape[1:] == (12, 8, 8)
        assert set(torch_threads.tolist()) == {1} and set(blas_threads.tolist()) == {1}
        seen += label.tolist()
    assert sorted(seen) == [0, 0, 0, 1, 1]


def test_pixels_for_gpu_encoding_give_the_same_latents(stores):
    from walloc_cli.torch_view import WallocEncoder

    pixels = LatentFolder(stores["images"], pixels=True)
    latents = LatentFolder(stores["npy"])
    encoder = WallocEncoder("rgb-16x", input_range="uint8", quantize="round")
    for i in (0, 2):
        x, label = pixels[i]
        assert x.dtype == torch.uint8 and x.shape[1:] == (8 * latents[i][0].shape[1], 8 * latents[i][0].shape[2])
        with torch.no_grad():
            z = encoder(x[None].float())[0]
        assert (z != latents[i][0]).float().mean() < 1e-3   # exact up to rounding ties


def test_crops_are_exact_away_from_their_edges():
    """The documented block-granularity facts: a latent crop is the crop's latents 3+ cells inside."""
    model = load_model("rgb-16x")
    rgb = np.asarray(Image.open(DATA / "photo.jpg").convert("RGB"))[:256, :256]
    z = api.image_to_latents(model, rgb)[0]
    crop = api.image_to_latents(model, np.ascontiguousarray(rgb[8 * 5:8 * 25, 8 * 4:8 * 22]))[0]
    inner = (slice(None), slice(3, -3), slice(3, -3))
    np.testing.assert_array_equal(crop[inner], z[:, 5:25, 4:22][inner])
    shifted = api.image_to_latents(model, np.ascontiguousarray(np.roll(rgb, 16, axis=1)))[0]
    np.testing.assert_array_equal(shifted, np.roll(z, 2, axis=2))   # circular shifts by whole cells: exact


# -- --dask on a LocalCluster -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                                  silence_logs=50) as c:
        yield c


def test_dask_outputs_equal_a_local_run_failures_are_reported_and_runs_resume(tree, tmp_path, cluster,
                                                                              monkeypatch):
    src = tmp_path / "src"
    for p in tree.rglob("*.png"):
        (src / p.parent.name).mkdir(parents=True, exist_ok=True)
        (src / p.parent.name / p.name).write_bytes(p.read_bytes())
    (src / "dog" / "broken.png").write_bytes(b"\x89PNG broken")
    monkeypatch.chdir(tmp_path)          # relative paths: the workers have another working directory
    address = cluster.scheduler_address
    for command, suffix, extra in (("latents", ".npy", ["--dtype", "int8"]), ("encode", ".wlc", ["-m", "rgb-16x"])):
        local = run(command, "-r", "src", "-o", f"local-{command}/", *extra)
        before = cluster.scheduler.transition_counter
        remote = run(command, "-r", "src", "-o", f"dask-{command}/", *extra, "--dask", address)
        assert cluster.scheduler.transition_counter >= before + 6 * 3   # 6 tasks went through the scheduler
        assert local.exit_code == remote.exit_code == 1
        assert error_lines(remote) == error_lines(local) == [
            f"walloc: error: {os.path.join('src', 'dog', 'broken.png')}: not an image walloc can read"]
        got = files(tmp_path / f"dask-{command}", suffix)
        assert len(got) == 5 and got == files(tmp_path / f"local-{command}", suffix)
    from walloc_cli import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "files_per_task", lambda count, threads: 4)   # several files per task
    r = run("latents", "-r", "src", "-o", "dask-chunks/", "--dtype", "int8", "--dask", address)
    assert r.exit_code == 1 and len(error_lines(r)) == 1
    assert files(tmp_path / "dask-chunks", ".npy") == files(tmp_path / "local-latents", ".npy")
    (tmp_path / "dask-latents/cat/0001.npy").unlink()
    r = run("latents", "-r", "src", "-o", "dask-latents/", "--dtype", "int8", "-n", "-v", "--dask", address)
    assert "skipped 4 files" in r.stderr and f"{os.path.join('src', 'cat', '0001.png')} -> " in r.stderr
    assert files(tmp_path / "dask-latents", ".npy") == files(tmp_path / "local-latents", ".npy")


def test_files_per_task():
    from walloc_cli.cluster import MAX_FILES_PER_TASK, files_per_task

    assert files_per_task(6, 2) == 1 and files_per_task(800, 2) == MAX_FILES_PER_TASK
    assert files_per_task(100, 4) == 6 and files_per_task(1_281_167, 256) == MAX_FILES_PER_TASK


def test_dask_usage_errors(tree, tmp_path):
    r = run("latents", str(tree / "cat/0000.png"), "-o", "-", "--dask", "tcp://127.0.0.1:1")
    assert r.exit_code == 2
    r = run("latents", str(tree / "cat/0000.png"), str(tree / "dog/0000.png"), "-o", str(tmp_path / "a.npz"),
            "--dask", "tcp://127.0.0.1:1")
    assert r.exit_code == 2 and "-o DIR/" in r.stderr
