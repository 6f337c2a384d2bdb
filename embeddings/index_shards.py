"""IVF builds that scale past memory: train once, add shards in worker processes, merge on disk.

Steps (faiss's recipe, faiss/contrib/ondisk.py and the wiki page "Indexes that do not fit
in RAM"): (1) train the empty IVF index on a sample and write it; (2) worker processes
each read the trained index, add a contiguous block of rows (read from a memory-mapped
``.npy``) with their int64 ids and write a shard index; (3) ``merge_ondisk`` merges the
shards' inverted lists into one ``OnDiskInvertedLists`` file (``merged.ivfdata``) that is
memory-mapped at search time, so neither the build nor the search needs the collection in
RAM. Each worker holds one block (``shard_size`` rows) plus the codes of its shard.

Output folder (written to a temporary sibling, renamed into place): ``merged.index`` (faiss
header + centroids; it references ``merged.ivfdata`` by absolute path), ``merged.ivfdata``,
``manifest.json``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from embeddings._io import atomic_dir
from embeddings.index import disable_polysemous_training

__all__ = ["build_sharded_ivf", "load_sharded_ivf"]

logger = logging.getLogger(__name__)


def _add_shard(trained_file: str, npy_file: str, start: int, stop: int, out_file: str,
               threads: int, batch_size: int) -> int:
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.read_index(trained_file)
    x = np.load(npy_file, mmap_mode="r")
    for s in range(start, stop, batch_size):
        e = min(stop, s + batch_size)
        index.add_with_ids(np.ascontiguousarray(x[s:e], dtype=np.float32),
                           np.arange(s, e, dtype=np.int64))
    faiss.write_index(index, out_file)
    return stop - start


def build_sharded_ivf(npy_file, factory_string: str, out_dir, *, metric: str = "ip",
                      n_workers: int = 2, shard_size: int = 250_000, train_sample: int = 65_536,
                      threads_per_worker: int = 1, batch_size: int = 65_536, seed: int = 0) -> dict:
    """Train once, add shards in parallel worker processes, merge the inverted lists on disk.

    Parameters
    ----------
    npy_file : path-like
        ``.npy`` of float32 ``(n, d)`` vectors (memory-mapped; row ``i`` gets faiss id ``i``).
    factory_string : str
        An IVF factory string (``"IVF1024,SQ8"``, ``"IVF4096,PQ64x8"``, ``"OPQ16_64,IVF..."``).
    out_dir : path-like
        Output folder (replaced atomically).
    metric : {"ip", "l2"}
    n_workers : int
        Worker processes (spawned) adding shards concurrently; 1 adds them in this process.
    shard_size : int
        Rows per shard (memory per worker ~ ``shard_size * code_size`` plus one batch).
    train_sample : int
        Random rows used to train (seeded by ``seed``).
    threads_per_worker : int
        OpenMP threads inside each worker (keep ``n_workers * threads`` <= cores).
    batch_size : int
        Rows per ``add_with_ids`` call inside a worker.

    Returns
    -------
    dict
        ``index_file``, ``ivfdata_file``, ``ntotal``, ``n_shards``, ``train_s``, ``add_s``,
        ``merge_s`` (the manifest).

    Raises
    ------
    ValueError
        Not a 2-D float32 ``.npy``, a non-IVF factory string, bad metric or sizes.
    """
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    if metric not in ("ip", "l2"):
        raise ValueError(f"metric: got {metric!r}; expected 'ip' or 'l2'")
    for name, value in (("n_workers", n_workers), ("shard_size", shard_size),
                        ("train_sample", train_sample), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: got {value!r}; expected a positive int")
    x = np.load(npy_file, mmap_mode="r")
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"npy_file: {npy_file} holds {x.dtype} {x.shape}; expected float32 (n, d)")
    n, d = x.shape
    mt = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    try:
        index = faiss.index_factory(d, factory_string, mt)
    except RuntimeError as exc:
        raise ValueError(f"factory_string: faiss cannot build {factory_string!r} for dim={d} "
                         f"({str(exc).splitlines()[-1]})") from None
    if faiss.try_extract_index_ivf(index) is None:
        raise ValueError(f"factory_string: {factory_string!r} is not an IVF index; on-disk "
                         "merging needs inverted lists (e.g. 'IVF1024,SQ8')")
    disable_polysemous_training(index)
    out_dir = Path(out_dir).resolve()
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(dir=out_dir.parent) as work:
        t0 = time.perf_counter()
        rows = np.sort(np.random.default_rng(seed).choice(n, min(n, train_sample), replace=False))
        index.train(np.ascontiguousarray(x[rows]))
        trained = os.path.join(work, "trained.index")
        faiss.write_index(index, trained)
        train_s = time.perf_counter() - t0
        bounds = [(s, min(n, s + shard_size)) for s in range(0, n, shard_size)]
        shard_files = [os.path.join(work, f"shard-{i:05d}.index") for i in range(len(bounds))]
        t0 = time.perf_counter()
        jobs = [(trained, str(npy_file), s, e, f, threads_per_worker, batch_size)
                for (s, e), f in zip(bounds, shard_files, strict=True)]
        if n_workers == 1:  # in this process (no spawn cost); threads restored afterwards
            before = faiss.omp_get_max_threads()
            try:
                added = sum(_add_shard(*job) for job in jobs)
            finally:
                faiss.omp_set_num_threads(before)
        else:
            with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
                added = sum(f.result() for f in [pool.submit(_add_shard, *job) for job in jobs])
        add_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        merged = faiss.read_index(trained)
        merge_ondisk(merged, shard_files, str(tmp / "merged.ivfdata"))
        ivf = faiss.extract_index_ivf(merged)
        # the header must name where the data will live after the folder is renamed
        faiss.downcast_InvertedLists(ivf.invlists).filename = str(out_dir / "merged.ivfdata")
        faiss.write_index(merged, str(tmp / "merged.index"))
        merge_s = time.perf_counter() - t0
        manifest = {"factory_string": factory_string, "metric": metric, "dim": d,
                    "ntotal": int(merged.ntotal), "n_shards": len(bounds), "added": int(added),
                    "index_file": str(out_dir / "merged.index"),
                    "ivfdata_file": str(out_dir / "merged.ivfdata"),
                    "train_s": round(train_s, 3), "add_s": round(add_s, 3),
                    "merge_s": round(merge_s, 3), "n_workers": n_workers}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        del merged
    logger.info("sharded build of %s: %d vectors in %d shards (train %.1fs, add %.1fs, merge %.1fs)",
                factory_string, n, len(bounds), train_s, add_s, merge_s)
    return manifest


def load_sharded_ivf(out_dir):
    """Read a folder of :func:`build_sharded_ivf`: a faiss index whose lists stay on disk.

    Returns the faiss index (``nprobe`` defaults to faiss's 1: set it). Raises ValueError
    if the folder or its files are missing.
    """
    import faiss

    out_dir = Path(out_dir)
    for name in ("merged.index", "merged.ivfdata", "manifest.json"):
        if not (out_dir / name).is_file():
            raise ValueError(f"{out_dir / name} is missing; rebuild with build_sharded_ivf")
    return faiss.read_index(str(out_dir / "merged.index"))
