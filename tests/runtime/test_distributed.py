"""Blocks on a Dask cluster (processes): identical bytes for 1, 2 and 3 workers, a worker
killed mid-run, the client killed then --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error
from resin.runtime import Enhancer

from resin.io import read_volume, write_volume

distributed = pytest.importorskip("distributed")

TILE = (8, 16, 16)
BLOCK = (4, 20, 20)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("dist") / "in.tif"
    write_volume(path, rng.integers(0, 4000, size=(24, 40, 40)).astype(np.uint16),
                 voxel_size=(2.0, 0.5, 0.5))
    return path


@pytest.fixture(scope="module")
def local_ref(fast_model, volume, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.ome.zarr"
    mips = out.parent / "mips"
    with Enhancer(fast_model, device="cpu", tile=TILE, block=BLOCK) as enh:
        enh.run(volume, out, mip=mips)
    return read_volume(out), mips


def _cluster(n):
    return distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=40)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_any_number_of_workers_gives_the_local_bytes(fast_model, volume, local_ref, tmp_path,
                                                     workers):
    import tifffile

    out = tmp_path / "out.ome.zarr"
    with _cluster(workers) as cluster, distributed.Client(cluster) as client:
        with Enhancer(fast_model, device="cpu", tile=TILE, block=BLOCK) as enh:
            report = enh.run(volume, out, mip=tmp_path / "m", client=client)
        ran_on = client.run(lambda: __import__("os").getpid())
    assert report.blocks == 24 and len(ran_on) == workers
    np.testing.assert_array_equal(read_volume(out), local_ref[0])
    for axis in "zyx":
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "m" / f"out_mip_{axis}.tif"),
                                      tifffile.imread(local_ref[1] / f"ref_mip_{axis}.tif"))
    assert not Path(str(out) + ".partial").exists()


def test_a_worker_killed_mid_run_changes_nothing(fast_model, volume, local_ref, tmp_path):
    out = tmp_path / "out.zarr"
    killed = []
    with _cluster(2) as cluster, distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())

        def kill_one(p):
            if not killed and p.blocks_done >= 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        with Enhancer(fast_model, device="cpu", tile=TILE, block=BLOCK) as enh:
            enh.run(volume, out, client=client, progress=kill_one)
    assert killed
    np.testing.assert_array_equal(read_volume(out), local_ref[0])


def test_client_killed_then_resume_gives_the_local_bytes(cli, fast_model, volume, local_ref,
                                                         tmp_path):
    out = tmp_path / "out.zarr"
    args = ["--engine", str(fast_model), str(volume), "-o", str(out), "--device", "cpu",
            "--tile", *map(str, TILE), "--block", *map(str, BLOCK)]
    code = "import sys; from resin.runtime.cli import main; sys.exit(main())"
    done = Path(str(out) + ".partial") / ".resin-run" / "done"
    proc = subprocess.Popen([sys.executable, "-c", code, *args, "--workers", "2", "--quiet"],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if done.is_dir() and len(list(done.iterdir())) >= 3:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its local cluster
    proc.wait()
    if out.exists():
        pytest.skip("the run finished before it could be killed")
    resumed = cli("resin-run", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(read_volume(out), local_ref[0])


def test_a_tiff_output_is_refused_before_a_cluster_starts(cli, fast_model, volume, tmp_path):
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(volume),
                                     "-o", str(tmp_path / "o.tif"), "--workers", "2"))
    assert "TIFF" in line


def test_the_documented_slurm_recipe_makes_a_gpu_job_script():
    """docs/cluster.md's first Python block, run as a user would (no SLURM needed to build
    the job script)."""
    pytest.importorskip("dask_jobqueue")
    import re

    doc = (Path(__file__).parents[2] / "docs" / "cluster.md").read_text()
    code = re.findall(r"```python\n(.*?)```", doc, re.S)[0]
    scope: dict = {}
    exec(code.replace("print(cluster.job_script())", ""), scope)  # noqa: S102
    cluster = scope["cluster"]
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p gpu" in script and "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH -t 04:00:00" in script
    assert re.search(r"distributed\.cli\.dask_worker|dask worker|dask-worker", script)
    assert "--nthreads 8" in script and "--resources GPU=1" in script


def _hyperstack(path: Path, shape: tuple[int, ...], axes: str, seed: int) -> np.ndarray:
    """Random uint16 data of ``shape`` written to ``path`` as an ImageJ TIFF of ``axes``."""
    import tifffile

    data = np.random.default_rng(seed).integers(0, 4000, size=shape).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})
    return data


def test_workers_read_the_chosen_channel(fast_model, tmp_path):
    src = tmp_path / "two.tif"
    data = _hyperstack(src, (12, 2, 40, 40), "ZCYX", seed=6)
    with Enhancer(fast_model, device="cpu", tile=TILE, block=BLOCK) as enh:
        ref = enh.enhance(np.ascontiguousarray(data[:, 1]))
        with _cluster(2) as cluster, distributed.Client(cluster) as client:
            enh.run(src, tmp_path / "out.ome.zarr", client=client, channel=1)
    np.testing.assert_array_equal(read_volume(tmp_path / "out.ome.zarr"), ref)


def test_a_series_on_workers_gives_the_local_store(fast_model, tmp_path):
    """Every time point on the cluster, into one TZYX store: the local run's bytes."""
    import zarr

    src = tmp_path / "movie.tif"
    _hyperstack(src, (2, 16, 20, 24), "TZYX", seed=8)
    with Enhancer(fast_model, device="cpu", tile=TILE, block=BLOCK) as enh:
        enh.run_series(src, tmp_path / "local.ome.zarr")
        with _cluster(2) as cluster, distributed.Client(cluster) as client:
            enh.run_series(src, tmp_path / "dist.ome.zarr", client=client)
    local = zarr.open_group(tmp_path / "local.ome.zarr", mode="r")["0"]
    dist = zarr.open_group(tmp_path / "dist.ome.zarr", mode="r")["0"]
    assert dist.shape == (2, 16, 20, 24)
    np.testing.assert_array_equal(dist[:], local[:])
