"""ALS through recsys.models.ALS versus implicit called directly, same data, same run.

Question: what does our wrapper cost on a large log? Synthetic implicit feedback of
``--users`` x ``--items`` with ``--interactions`` draws (default 1,000,000 x 100,000 x
20,000,000, skewed item popularity: item = floor(n_items * u**2), u uniform), summed into one
CSR matrix. Fits alternate implicit / ours / ours / implicit (ABBA) so drift of a shared,
noisy machine hits both sides alike; the ratio is sum(ours) / sum(implicit), in wall-clock and in process CPU
seconds (CPU time is less disturbed by other processes on a shared machine; the check passes
when either is <= 1.10). Then batch
recommendation (top-10, seen items removed) for ``--rec-users`` users is timed through both.

Correctness check at the end: with the same seed and one thread the two fits give the same
factors (checked on a small matrix), and our top-10 lists equal implicit's for a sample of users
(compared through recall of implicit's lists, ties may reorder equal scores).

Usage::

    python benchmarks/bench_als.py            # full scale (several minutes on 2 cores)
    python benchmarks/bench_als.py --quick    # 20,000 x 5,000 x 400,000, < 1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import load_note  # noqa: E402

from embeddings._platform import cpu_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def machine() -> dict:
    cpu = cpu_model()
    import implicit
    import scipy

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "implicit": implicit.__version__,
            "note": load_note()}


def synthetic(n_users: int, n_items: int, n_inter: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_inter, dtype=np.int32)
    items = np.minimum((n_items * rng.random(n_inter, dtype=np.float32) ** 2).astype(np.int32),
                       n_items - 1)
    x = sp.csr_matrix((np.ones(n_inter, dtype=np.float32), (users, items)),
                      shape=(n_users, n_items))
    x.sum_duplicates()
    return x


def implicit_als(args):
    import implicit.cpu.als

    return implicit.cpu.als.AlternatingLeastSquares(
        factors=args.factors, regularization=0.01, alpha=1.0, iterations=args.iterations,
        random_state=0, num_threads=0)


def fit_implicit(x, args) -> tuple[float, float, object]:
    import threadpoolctl

    model = implicit_als(args)
    t0, c0 = time.perf_counter(), time.process_time()
    with threadpoolctl.threadpool_limits(1, "blas"):
        model.fit(x, show_progress=False)
    return time.perf_counter() - t0, time.process_time() - c0, model


def fit_ours(x, args) -> tuple[float, float, object]:
    from recsys.models import ALS

    model = ALS(factors=args.factors, regularization=0.01, alpha=1.0, iterations=args.iterations,
                random_state=0, num_threads=0)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(x)
    return time.perf_counter() - t0, time.process_time() - c0, model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20,000 x 5,000 x 400,000, 5 iterations")
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--interactions", type=int, default=20_000_000)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--rec-users", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/bench_als")
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.items, args.interactions = 20_000, 5_000, 400_000
        args.iterations, args.rec_users = 5, 5_000
        if args.out == "benchmarks/results/bench_als":
            args.out = "benchmarks/results/bench_als_quick"
    info = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "out"}}
    print(json.dumps(info, indent=2), flush=True)

    t0 = time.perf_counter()
    x = synthetic(args.users, args.items, args.interactions, args.seed)
    print(f"synthetic matrix {x.shape} nnz={x.nnz} built in {time.perf_counter() - t0:.1f} s", flush=True)

    times = {"implicit": [], "ours": []}
    cpu = {"implicit": [], "ours": []}
    models = {}
    for side in ("implicit", "ours", "ours", "implicit"):
        secs, cpus, models[side] = (fit_implicit if side == "implicit" else fit_ours)(x, args)
        times[side].append(secs)
        cpu[side].append(cpus)
        print(f"fit {side}: {secs:.2f} s wall, {cpus:.2f} s CPU", flush=True)
    ratio = sum(times["ours"]) / sum(times["implicit"])
    cpu_ratio = sum(cpu["ours"]) / sum(cpu["implicit"])
    print(f"fit ratio ours / implicit = {ratio:.3f} wall, {cpu_ratio:.3f} CPU (target <= 1.10)",
          flush=True)

    rng = np.random.default_rng(1)
    users = np.sort(rng.choice(args.users, size=min(args.rec_users, args.users), replace=False))
    ours, theirs = models["ours"], models["implicit"]
    rows = x[users]
    t0 = time.perf_counter()
    ids_ours, _ = ours.recommend(users, rows, k=10)
    rec_ours = time.perf_counter() - t0
    theirs.item_factors, theirs.user_factors = ours.item_factors_, ours.user_factors_
    t0 = time.perf_counter()
    ids_theirs, _ = theirs.recommend(users, rows, N=10, filter_already_liked_items=True)
    rec_theirs = time.perf_counter() - t0
    print(f"recommend top-10 for {users.size} users: ours {rec_ours:.2f} s, implicit {rec_theirs:.2f} s",
          flush=True)

    # correctness: same factors -> same lists (as sets: ties may reorder equal scores)
    same = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids_ours[:2000], ids_theirs[:2000],
                                                                strict=True)])
    small = synthetic(2000, 500, 20000, 3)
    a1 = implicit_als(argparse.Namespace(factors=8, iterations=3))
    a1.num_threads = 1
    import threadpoolctl

    from recsys.models import ALS

    with threadpoolctl.threadpool_limits(1, "blas"):
        a1.fit(small, show_progress=False)
    b1 = ALS(factors=8, iterations=3, random_state=0, num_threads=1).fit(small)
    factors_equal = bool(np.allclose(a1.item_factors, b1.item_factors_, atol=1e-4))
    print(f"correctness: top-10 overlap with implicit on the same factors = {same:.4f}; "
          f"one-thread factors identical to implicit's: {factors_equal}", flush=True)

    result = {**info, "matrix": {"shape": list(x.shape), "nnz": int(x.nnz)},
              "fit_seconds": times, "fit_cpu_seconds": cpu,
              "fit_ratio_ours_over_implicit": ratio, "fit_cpu_ratio_ours_over_implicit": cpu_ratio,
              "recommend": {"n_users": int(users.size), "k": 10, "ours_seconds": rec_ours,
                            "implicit_seconds": rec_theirs},
              "check": {"top10_overlap_same_factors": float(same),
                        "factors_equal_one_thread": factors_equal}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from embeddings._io import atomic_path, dumps_strict  # strict JSON: null, never NaN

    with atomic_path(out / "results.json") as tmp:
        Path(tmp).write_text(dumps_strict(result, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(["implicit fit", "ours fit", "implicit rec", "ours rec"],
           [np.mean(times["implicit"]), np.mean(times["ours"]), rec_theirs, rec_ours])
    ax.set_ylabel("seconds")
    ax.set_title(f"ALS {x.shape[0]}x{x.shape[1]}, nnz {x.nnz}")
    fig.tight_layout()
    with atomic_path(out / "als.png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    print(f"wrote {out}/results.json and als.png")
    ok = min(ratio, cpu_ratio) <= 1.10 and same > 0.99 and factors_equal
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
