"""Sequential next-item models on MicroLens-50K, leave-one-out with full ranking.

Question: does a model of the sequence (SASRec, GRU4Rec) beat the last-item kNN and the
project's non-sequential models (popularity, ItemKNN; EASE where it fits) at predicting a
user's next micro-video?

Protocol: ``MicroLens-50k_pairs_without_last.tsv`` already lacks each user's true last item
(the hidden test item). The now-last item of every user is the **validation target**; the rest
is the training history. Every model is fitted on the training histories only; the neural
models' early stopping uses a further inner split (the last *training* item of 2,000 users),
so the validation target is never seen while fitting. Ranking is over all items minus the
user's history; a target tied with other items is ranked after all of them (ties count
against the model). HR@10, NDCG@10, MRR@10 over all users. Hyperparameters are fixed
defaults (no search was run: no tuning on the reported numbers).

Peer: RecBole's SASRec/GRU4Rec on the same split, when ``recbole`` imports with this
numpy/torch; otherwise the exact error is recorded and the peer is skipped.

Writes ``benchmarks/results/bench_sequential/{results.json, results.png}``.

Usage::

    python benchmarks/bench_sequential.py --quick   # 5,000 users, 2 epochs
    python benchmarks/bench_sequential.py --epochs 5
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_note  # noqa: E402

from recsys.models import fit_model, make_model  # noqa: E402
from recsys.models.sequential import sequences_to_user_items  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "microlens-50k"
OUT = Path(__file__).resolve().parent / "results" / "bench_sequential"


def load_microlens(path: Path, max_users: int | None):
    users, seqs, item_of = [], [], {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            uid, items = line.rstrip("\n").split("\t", 1)
            users.append(uid)
            seqs.append(np.array([item_of.setdefault(i, len(item_of)) for i in items.split()]))
            if max_users and len(users) >= max_users:
                break
    return users, seqs, len(item_of)


def leave_one_out_metrics(scores: np.ndarray, histories, targets, k: int = 10) -> dict:
    """HR@k, NDCG@k, MRR@k; seen items removed; ties counted against the model."""
    s = scores.copy()
    for i, h in enumerate(histories):
        s[i, h] = -np.inf
    t = s[np.arange(len(targets)), targets]
    rank = (s >= t[:, None]).sum(axis=1)  # 1-based; equal scores rank ahead of the target
    hit = rank <= k
    return {"hr": hit.astype(float), "ndcg": np.where(hit, 1 / np.log2(rank + 1), 0.0),
            "mrr": np.where(hit, 1.0 / rank, 0.0)}


def evaluate(model, ui, histories, targets, k=10, batch=2048):
    sums = {"hr": 0.0, "ndcg": 0.0, "mrr": 0.0}
    t0 = time.perf_counter()
    n = len(targets)
    for s in range(0, n, batch):
        idx = np.arange(s, min(s + batch, n))
        sc = model.score(ui[idx], idx)
        m = leave_one_out_metrics(sc, [histories[i] for i in idx], targets[idx], k)
        for key in sums:
            sums[key] += float(m[key].sum())
    eval_s = time.perf_counter() - t0
    # time to produce top-k lists for all users (the serving path)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        idx = np.arange(s, min(s + batch, n))
        model.recommend(idx, ui[idx], k=k)
    rec_s = time.perf_counter() - t0
    return {f"hr@{k}": sums["hr"] / n, f"ndcg@{k}": sums["ndcg"] / n, f"mrr@{k}": sums["mrr"] / n,
            "eval_seconds": eval_s, "recommend_all_users_seconds": rec_s}


def run_recbole_peer(seqs, model: str, epochs: int, embed_dim: int, workdir: Path) -> dict:
    """RecBole's ``model`` on the same split: LS valid_and_test = (last training item, our target).

    Returns metrics and timings, or ``{"status": "failed", "error": ...}`` with the exact error.
    """
    try:
        import recbole
        from recbole.quick_start import run_recbole
    except Exception as exc:  # record exactly why the peer cannot run
        return {"status": "skipped", "error": f"{type(exc).__name__}: {exc}"}
    ds = workdir / "ml50k"
    ds.mkdir(parents=True, exist_ok=True)
    with open(ds / "ml50k.inter", "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, s in enumerate(seqs):
            for t, i in enumerate(s):
                fh.write(f"{u}\t{i}\t{t}\n")
    cfg = {"data_path": str(workdir), "dataset": "ml50k", "USER_ID_FIELD": "user_id",
           "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
           "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
           "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                         "group_by": "user"},
           "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
           "epochs": epochs, "train_batch_size": 256, "eval_batch_size": 2048, "stopping_step": 2,
           "hidden_size": embed_dim, "embedding_size": embed_dim, "loss_type": "CE",
           "train_neg_sample_args": None, "MAX_ITEM_LIST_LENGTH": 50, "device": "cpu",
           "use_gpu": False, "seed": 0, "reproducibility": True, "show_progress": False,
           "checkpoint_dir": str(workdir / "saved"), "log_wandb": False,
           "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)"}
    t0 = time.perf_counter()
    try:
        res = run_recbole(model=model, dataset="ml50k", config_dict=cfg)
    except Exception as exc:
        import traceback

        return {"status": "failed", "recbole": recbole.__version__,
                "error": f"{type(exc).__name__}: {exc}",
                "where": traceback.format_exc().strip().splitlines()[-3:]}
    test = res["test_result"]
    return {"status": "ok", "recbole": recbole.__version__, "hr@10": float(test["hit@10"]),
            "ndcg@10": float(test["ndcg@10"]), "mrr@10": float(test["mrr@10"]),
            "fit_and_eval_seconds": time.perf_counter() - t0,
            "note": "RecBole's own full-ranking evaluation (its tie handling), same split"}


def _write_partial(settings, env, results) -> None:
    """Results so far (a run stopped by a time limit keeps the models already measured)."""
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "partial.json.tmp"
    tmp.write_text(json.dumps({"settings": settings, "environment": env, "results": results},
                              indent=2, default=float))
    tmp.replace(OUT / "partial.json")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5,000 users, 2 epochs")
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--models", default="popularity,itemknn,lastitem,gru4rec,sasrec")
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--loss", default="ce", choices=["ce", "bce"],
                    help="SASRec/GRU4Rec loss: full softmax (ce) or sampled BCE (bce, far cheaper)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on 2 shared cores more threads oversubscribe)")
    ap.add_argument("--no-recbole", dest="recbole", action="store_false",
                    help="skip the RecBole peer")
    ap.add_argument("--tag", default="", help="write into results/bench_sequential/TAG/")
    args = ap.parse_args(argv)
    global OUT
    if args.tag:
        OUT = OUT / args.tag
    users_cap = args.users or (5000 if args.quick else None)
    epochs = 2 if args.quick else args.epochs
    import scipy
    import torch

    torch.set_num_threads(args.threads)

    settings = {"data": "MicroLens-50K pairs_without_last (validation = last item in file)",
                "max_users": users_cap, "epochs": epochs, "embed_dim": args.embed_dim, "loss": args.loss,
                "k": 10, "ties": "counted against the model", "ranking": "full, history removed"}
    env = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "load": load_note()}
    print("settings:", json.dumps(settings))
    print("environment:", json.dumps(env))
    users, seqs, n_items = load_microlens(DATA / "MicroLens-50k_pairs_without_last.tsv", users_cap)
    histories = [s[:-1] for s in seqs]
    targets = np.array([s[-1] for s in seqs], dtype=np.int64)
    ui, times = sequences_to_user_items(histories, n_items)
    print(f"{len(users)} users, {n_items} items, {ui.nnz} training interactions")
    neural = dict(epochs=epochs, embed_dim=args.embed_dim, batch_size=256, patience=2, loss=args.loss,
                  validation_users=2000, seed=0, device="cpu")
    specs = {"popularity": {}, "itemknn": {"neighbors": 200}, "lastitem": {"neighbors": 200},
             "lastitem3": {"neighbors": 200, "n_last": 3, "decay": 0.5},
             "ease": {"l2": 500.0}, "gru4rec": neural, "sasrec": neural}
    results = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        reg = "lastitem" if name.startswith("lastitem") else name
        model = make_model(reg, **specs[name])
        t0 = time.perf_counter()
        fit_model(model, ui, interaction_times=times)
        fit_s = time.perf_counter() - t0
        r = evaluate(model, ui, histories, targets)
        r["fit_seconds"] = fit_s
        r["load_after"] = os.getloadavg()[0]
        if hasattr(model, "training_history_"):
            r["training_history"] = model.training_history_
        results[name] = r
        _write_partial(settings, env, results)
        print(f"{name:12s} HR@10 {r['hr@10']:.4f} NDCG@10 {r['ndcg@10']:.4f} MRR@10 {r['mrr@10']:.4f} "
              f"fit {fit_s:.1f}s recommend-all {r['recommend_all_users_seconds']:.1f}s "
              f"(load {r['load_after']:.1f})", flush=True)
    peer = {}
    if args.recbole:
        import tempfile

        for m in ("SASRec", "GRU4Rec"):
            with tempfile.TemporaryDirectory() as td:
                peer[m] = run_recbole_peer(seqs, m, epochs, args.embed_dim, Path(td))
            print(f"RecBole {m}:", json.dumps(peer[m], default=str), flush=True)
    # correctness check: metrics in range, and a model scoring the target highest gets HR 1
    fake = np.zeros((3, n_items), np.float32)
    fake[np.arange(3), targets[:3]] = 1.0
    ok = leave_one_out_metrics(fake, histories[:3], targets[:3])["hr"].all()
    tie = leave_one_out_metrics(np.zeros((1, n_items), np.float32), histories[:1], targets[:1])
    ok = ok and tie["hr"][0] == 0.0  # all-equal scores: target ranked last, never a hit
    print("correctness check (perfect scorer hits, all-ties scorer misses):", "OK" if ok else "FAILED")
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {"settings": settings, "environment": env, "results": results, "recbole": peer,
               "check_ok": bool(ok)}
    tmp = OUT / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(OUT / "results.json")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(results)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        x = np.arange(len(names))
        ax.bar(x - 0.2, [results[n]["hr@10"] for n in names], 0.4, label="HR@10")
        ax.bar(x + 0.2, [results[n]["ndcg@10"] for n in names], 0.4, label="NDCG@10")
        ax.set_xticks(x, names)
        ax.set_title(f"MicroLens-50K validation ({len(users)} users, full ranking)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(OUT / "results.png", dpi=100)
    except ImportError:
        print("matplotlib missing: no PNG")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
