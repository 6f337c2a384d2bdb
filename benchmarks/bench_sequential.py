"""Sequential next-item models on MicroLens-50K and MovieLens 100K, leave-one-out, full ranking.

Question: does a model of the sequence (SASRec, GRU4Rec) beat the last-item kNN, the
project's non-sequential models (popularity, ItemKNN, EASE) and RecBole's SASRec/GRU4Rec run
in the same process on the same split?

Protocol (``--dataset``):

* ``microlens-50k``: ``MicroLens-50k_pairs_without_last.tsv`` already lacks each user's true
  last item (the hidden test item). The now-last item of every user is the reported
  **validation target**; the rest is the training history.
* ``ml-100k``: ``u.data`` ordered by timestamp per user (ties in file order). Last item =
  **test**, second-to-last = **validation**, the rest = training. Models are fitted once on
  the training histories; the validation target is predicted from the training history, the
  test target from the training history plus the validation item (folded in, no refit).
  Settings are only ever compared on validation; test is reported beside it.

Every model is fitted on the training histories only; the neural models' early stopping uses
a further inner split (the last *training* item of 2,000 users; 300 on ML-100K), so no
reported target is seen while fitting. Ranking is over all items minus the user's history; a
target tied with other items is ranked after all of them (ties count against the model).
HR@10, NDCG@10, MRR@10 over all users. ``--sampled N`` adds, beside them, the same metrics
ranked against N sampled negatives (labelled; they inflate, see RecBole issue #1571).

Peer (``--peers recbole``, default when importable): RecBole's SASRec and GRU4Rec on exactly
the same split via its ``benchmark_filename`` files, trained by RecBole's own trainer steps with
the same epoch cap and a budget of process CPU seconds equal to our corresponding model's fit
(CPU time, not wall-clock: the machine is shared); their
final scores are evaluated by this script's metric code (see ``benchmarks/_recbole_peer.py``
for the numpy-2 / pandas-3 shims and why). Install: ``pip install recbole==1.2.1 --no-deps``
then ``pip install -e .[peers]`` (RecBole's own pins would downgrade ray).

Writes ``benchmarks/results/bench_sequential/[TAG/]{results.json, results.png}``.

Usage::

    python benchmarks/bench_sequential.py --quick                 # both datasets, small, 2 epochs
    python benchmarks/bench_sequential.py --dataset ml-100k --epochs 30 --sampled 100
    python benchmarks/bench_sequential.py --dataset microlens-50k --epochs 6 --models sasrec
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

DATA_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATA = DATA_ROOT / "microlens-50k"
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
    return users, seqs, list(item_of)  # raw item ids in index order (for --item-text)


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


def load_ml100k(path: Path, max_users: int | None):
    """Per-user item sequences of ``u.data`` ordered by timestamp (stable: ties in file order)."""
    import pandas as pd

    df = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "ts"])
    df["row"] = np.arange(len(df))
    df = df.sort_values(["user", "ts", "row"], kind="stable")
    items, item_idx = np.unique(df["item"].to_numpy(), return_inverse=True)
    df["iidx"] = item_idx
    users, seqs = [], []
    for u, g in df.groupby("user", sort=True):
        users.append(str(u))
        seqs.append(g["iidx"].to_numpy(np.int64))
        if max_users and len(users) >= max_users:
            break
    return users, seqs, int(items.size)


def sampled_metrics(scores: np.ndarray, histories, targets, n_neg: int, rng, k: int = 10) -> dict:
    """HR@k/NDCG@k of the target ranked against ``n_neg`` sampled negatives (ties against it).

    Negatives are drawn uniformly without replacement from the items outside the user's history
    and target, with the sampler of :func:`recsys.evaluation.evaluate` (``n_negatives``).
    """
    from recsys.evaluation.evaluator import _sample_negatives

    n_items = scores.shape[1]
    hr = np.zeros(len(targets))
    ndcg = np.zeros(len(targets))
    for i, (h, t) in enumerate(zip(histories, targets, strict=True)):
        seen = np.unique(np.r_[h, t]).astype(np.int64)
        neg = _sample_negatives(seen, n_items, n_neg, rng)
        rank = 1 + int((scores[i, neg] >= scores[i, t]).sum())
        if rank <= k:
            hr[i], ndcg[i] = 1.0, 1.0 / np.log2(rank + 1)
    return {"hr": hr, "ndcg": ndcg}


def evaluate(score_fn, histories, targets, *, k=10, batch=2048, sampled=0, seed=0) -> dict:
    """Full-ranking (and, if ``sampled``, sampled-negative) metrics of ``score_fn(idx)``."""
    sums = {"hr": 0.0, "ndcg": 0.0, "mrr": 0.0}
    per_user = {"hr": [], "ndcg": []}
    ssum = {"hr": 0.0, "ndcg": 0.0}
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    n = len(targets)
    for s in range(0, n, batch):
        idx = np.arange(s, min(s + batch, n))
        sc = np.asarray(score_fn(idx), dtype=np.float32)
        hs = [histories[i] for i in idx]
        m = leave_one_out_metrics(sc, hs, targets[idx], k)
        for key in sums:
            sums[key] += float(m[key].sum())
        for key in per_user:
            per_user[key].append(m[key])
        if sampled:
            ms = sampled_metrics(sc, hs, targets[idx], sampled, rng, k)
            for key in ssum:
                ssum[key] += float(ms[key].sum())
    out = {f"hr@{k}": sums["hr"] / n, f"ndcg@{k}": sums["ndcg"] / n, f"mrr@{k}": sums["mrr"] / n,
           "eval_seconds": time.perf_counter() - t0,
           "_per_user": {key: np.concatenate(v) if v else np.zeros(0) for key, v in per_user.items()}}
    if sampled:
        out[f"sampled{sampled}_hr@{k}"] = ssum["hr"] / n
        out[f"sampled{sampled}_ndcg@{k}"] = ssum["ndcg"] / n
    return out


def recommend_time(model, ui, k=10, batch=2048) -> float:
    """Seconds to produce top-k lists for every user (the serving path)."""
    t0 = time.perf_counter()
    n = ui.shape[0]
    for s in range(0, n, batch):
        idx = np.arange(s, min(s + batch, n))
        model.recommend(idx, ui[idx], k=k)
    return time.perf_counter() - t0


def _write_partial(settings, env, results) -> None:
    """Results so far (a run stopped by a time limit keeps the models already measured)."""
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "partial.json.tmp"
    def public(x):  # per-user arrays ("_per_user") stay out of the JSON
        return ({k: public(v) for k, v in x.items() if not str(k).startswith("_")}
                if isinstance(x, dict) else x)

    tmp.write_text(json.dumps({"settings": settings, "environment": env,
                               "results": public(results)}, indent=2, default=float))
    tmp.replace(OUT / "partial.json")


def prepare(dataset: str, users_cap: int | None) -> dict:
    """Training histories, validation targets and (ML-100K) test histories/targets."""
    if dataset == "microlens-50k":
        users, seqs, item_ids = load_microlens(DATA / "MicroLens-50k_pairs_without_last.tsv",
                                              users_cap)
        train = [s[:-1] for s in seqs]
        val_t = np.array([s[-1] for s in seqs], dtype=np.int64)
        return {"users": users, "n_items": len(item_ids), "train": train, "val_targets": val_t,
                "test": None, "validation_users": 2000, "item_ids": item_ids,
                "protocol": "pairs_without_last: validation = last item in the file (the true "
                            "last item is withheld by the data set; no test here)"}
    users, seqs, n_items = load_ml100k(DATA_ROOT / "ml-100k" / "u.data", users_cap)
    train = [s[:-2] for s in seqs]
    val_t = np.array([s[-2] for s in seqs], dtype=np.int64)
    test_h = [s[:-1] for s in seqs]
    test_t = np.array([s[-1] for s in seqs], dtype=np.int64)
    return {"users": users, "n_items": n_items, "train": train, "val_targets": val_t,
            "test": (test_h, test_t), "validation_users": 300,
            "protocol": "u.data by timestamp: validation = second-to-last item (from the training "
                        "history), test = last item (from training history + validation item, "
                        "folded in without refitting)"}


def run_dataset(dataset: str, args, epochs: int, users_cap, peers_on: bool) -> dict:
    import scipy.sparse as sp

    d = prepare(dataset, users_cap)
    train, val_t, n_items = d["train"], d["val_targets"], d["n_items"]
    ui, times = sequences_to_user_items(train, n_items)
    n_users = len(train)
    ui_test = None
    if d["test"] is not None:
        extra = sp.csr_matrix((np.ones(n_users, np.float32), (np.arange(n_users), val_t)),
                              shape=ui.shape)
        ui_test = ((ui + extra) > 0).astype(np.float32).tocsr()
    print(f"[{dataset}] {n_users} users, {n_items} items, {ui.nnz} training interactions; "
          f"{d['protocol']}", flush=True)
    neural = dict(epochs=epochs, embed_dim=args.embed_dim, batch_size=args.batch_size,
                  patience=args.patience, learning_rate=args.lr,
                  loss=args.loss, validation_users=d["validation_users"], seed=0, device="cpu",
                  progress=False, windows=args.windows, max_length=args.max_length,
                  id_dropout=args.id_dropout)
    feats = None
    if args.item_text:  # titles -> TF-IDF + SVD (as `recsys train --item-text`), for the +text models
        if "item_ids" not in d:
            raise SystemExit("--item-text: only --dataset microlens-50k has item texts here")
        import pandas as pd

        from recsys.app.side import text_features

        titles = pd.read_csv(args.item_text, dtype={"item": str}).set_index("item")["title"]
        texts = titles.reindex(d["item_ids"]).fillna("").astype(str).tolist()
        feats = [text_features(texts)]
        print(f"[{dataset}] item text: {feats[0].shape} TF-IDF+SVD features of {args.item_text} "
              f"({sum(1 for t in texts if t)} of {len(texts)} items have a title)", flush=True)
    specs = {"popularity": {}, "itemknn": {"neighbors": 200}, "lastitem": {"neighbors": 200},
             "lastitem3": {"neighbors": 200, "n_last": 3, "decay": 0.5},
             "ease": {"l2": 500.0}, "gru4rec": neural, "sasrec": dict(neural, num_layers=2)}
    specs["sasrec+text"], specs["gru4rec+text"] = specs["sasrec"], specs["gru4rec"]
    settings = {"protocol": d["protocol"], "n_users": n_users, "n_items": n_items,
                "max_users": users_cap, "epochs_cap": epochs, "embed_dim": args.embed_dim,
                "max_length": args.max_length, "windows": args.windows, "id_dropout": args.id_dropout,
                "item_text": args.item_text, "loss": args.loss, "k": 10, "sampled_negatives": args.sampled,
                "ties": "counted against the model", "ranking": "full, history removed",
                "model_params": {m: {k: v for k, v in specs[m].items()} for m in specs}}
    results = {}
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in names:
        reg = "lastitem" if name.startswith("lastitem") else name.removesuffix("+text")
        model = make_model(reg, **specs[name])
        t0, c0 = time.perf_counter(), time.process_time()
        # the item texts go to the "+text" variants only (both in one run: a paired comparison)
        fit_model(model, ui, interaction_times=times,
                  item_features=feats if name.endswith("+text") else None)
        r = {"fit_seconds": time.perf_counter() - t0, "fit_cpu_seconds": time.process_time() - c0}
        r["validation"] = evaluate(lambda idx, m=model: m.score(ui[idx], idx), train, val_t,
                                   sampled=args.sampled)
        if ui_test is not None:
            test_h, test_t = d["test"]
            r["test"] = evaluate(lambda idx, m=model: m.score(ui_test[idx], idx), test_h, test_t,
                                 sampled=args.sampled)
        r["recommend_all_users_seconds"] = recommend_time(model, ui)
        r["load_after"] = os.getloadavg()[0]
        if hasattr(model, "training_history_"):
            r["training_history"] = model.training_history_
        results[name] = r
        _write_partial(settings, {}, {dataset: results})
        _print_row(name, r, args.sampled)
    if peers_on:
        import tempfile

        import _recbole_peer as rbp

        for peer, ours in (("SASRec", "sasrec"), ("GRU4Rec", "gru4rec")):
            if ours not in names:
                continue
            budget = args.peer_time or results[ours]["fit_cpu_seconds"]
            with tempfile.TemporaryDirectory() as td:
                p = rbp.RecBolePeer(peer, train, val_t, n_items, Path(td), max_length=args.max_length,
                                    embed_dim=args.embed_dim, num_layers=2, dropout=0.2,
                                    learning_rate=args.lr, batch_size=args.recbole_batch,
                                    epochs=epochs, time_budget_s=budget, patience=args.patience,
                                    validation_users=d["validation_users"], seed=0)
                try:
                    info = p.fit()
                except Exception as exc:  # record exactly why the peer failed
                    import traceback

                    results[f"recbole-{ours}"] = {
                        "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                        "where": traceback.format_exc().strip().splitlines()[-4:]}
                    print(f"RecBole {peer} failed:", results[f"recbole-{ours}"], flush=True)
                    continue
                r = {"fit_seconds": info["setup_seconds"] + info["train_seconds"],
                     "fit_cpu_seconds": info["train_cpu_seconds"], "peer": info}
                r["validation"] = evaluate(
                    lambda idx, p=p: p.score_sequences([train[i] for i in idx]), train, val_t,
                    sampled=args.sampled)
                if d["test"] is not None:
                    test_h, test_t = d["test"]
                    r["test"] = evaluate(lambda idx, p=p, th=test_h: p.score_sequences([th[i] for i in idx]),
                                         test_h, test_t, sampled=args.sampled)
                r["load_after"] = os.getloadavg()[0]
            results[f"recbole-{ours}"] = r
            _write_partial(settings, {}, {dataset: results})
            _print_row(f"recbole-{ours}", r, args.sampled)
            print(f"  RecBole {peer}: {info['epochs_run']} epoch(s) (cap {epochs}) in "
                  f"{info['train_cpu_seconds']:.0f} CPU-s, {info['train_seconds']:.0f}s wall "
                  f"(budget {budget:.0f} CPU-s; our {ours}'s fit: "
                  f"{results[ours]['fit_cpu_seconds']:.0f} CPU-s, "
                  f"{results[ours]['fit_seconds']:.0f}s wall); "
                  f"{info['rows']['train']} training rows", flush=True)
    tests = paired_tests(results, names)
    for base in SEQUENTIAL:  # the same model with and without item texts
        if base in results and base + "+text" in results:
            tests.update(paired_tests(results, [base + "+text", base], best=base + "+text",
                                      rivals=[base]))
    for r in results.values():  # per-user arrays are for the tests only, not the JSON
        for part in ("validation", "test"):
            if isinstance(r, dict) and isinstance(r.get(part), dict):
                r[part].pop("_per_user", None)
    return {"settings": settings, "results": results, "paired_tests": tests}


SEQUENTIAL = ("sasrec", "gru4rec", "sasrec+text", "gru4rec+text")
NON_SEQUENTIAL = ("popularity", "itemknn", "ease")


def paired_tests(results: dict, names: list[str], best: str | None = None,
                 rivals: list[str] | None = None) -> dict:
    """Best sequential model (by validation NDCG@10) vs the last-item kNNs and the best
    non-sequential model: paired t-test over users and bootstrap 95% interval of the
    difference (:mod:`recsys.evaluation.significance`), on validation and, when there, test."""
    from recsys.evaluation.significance import bootstrap_ci, paired_test

    ok = {n: results[n] for n in names if n in results and "validation" in results[n]}
    seq = [n for n in ok if n in SEQUENTIAL]
    if not seq:
        return {}
    best = best or max(seq, key=lambda n: ok[n]["validation"]["ndcg@10"])
    if rivals is None:
        rivals = [n for n in ok if n.startswith("lastitem")]
        non_seq = [n for n in ok if n in NON_SEQUENTIAL]
        if non_seq:
            rivals.append(max(non_seq, key=lambda n: ok[n]["validation"]["ndcg@10"]))
    out = {}
    for rival in rivals:
        for part in ("validation", "test"):
            if part not in ok[best] or part not in ok[rival]:
                continue
            for metric in ("hr", "ndcg"):
                a = ok[best][part]["_per_user"][metric]
                b = ok[rival][part]["_per_user"][metric]
                pt = paired_test(a, b, test="t")
                lo, hi = bootstrap_ci(a - b, seed=0)
                rel = pt["mean_diff"] / max(pt["mean_b"], 1e-12)
                out[f"{best}_vs_{rival}/{part}/{metric}@10"] = {**pt, "diff_ci95": [lo, hi],
                                                                "relative": rel}
                print(f"  {best} vs {rival} {part} {metric}@10: {pt['mean_a']:.4f} vs "
                      f"{pt['mean_b']:.4f}, diff {pt['mean_diff']:+.4f} ({100 * rel:+.0f}%) CI95 "
                      f"[{lo:+.4f}, {hi:+.4f}] p {pt['p_value']:.2g}", flush=True)
    return out


def _print_row(name, r, sampled) -> None:
    for part in ("validation", "test"):
        if part not in r:
            continue
        v = r[part]
        line = (f"{name:16s} {part:10s} HR@10 {v['hr@10']:.4f} NDCG@10 {v['ndcg@10']:.4f} "
                f"MRR@10 {v['mrr@10']:.4f}")
        if sampled:
            line += (f" | sampled-{sampled} (inflated) HR@10 {v[f'sampled{sampled}_hr@10']:.4f} "
                     f"NDCG@10 {v[f'sampled{sampled}_ndcg@10']:.4f}")
        if part == "validation":
            line += f"  fit {r['fit_seconds']:.1f}s ({r.get('fit_cpu_seconds', 0):.0f} CPU-s)"
            if "recommend_all_users_seconds" in r:
                line += f" recommend-all {r['recommend_all_users_seconds']:.1f}s"
            line += f" (load {r['load_after']:.1f})"
        print(line, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 users per data set, 2 epochs")
    ap.add_argument("--dataset", default="microlens-50k",
                    choices=["microlens-50k", "ml-100k", "both"])
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=4, help="epoch cap of the neural models")
    ap.add_argument("--models", default="popularity,itemknn,ease,lastitem,lastitem3,gru4rec,sasrec")
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256, help="our neural models (sequences)")
    ap.add_argument("--patience", type=int, default=2, help="early-stopping patience (epochs)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (ours and RecBole)")
    ap.add_argument("--loss", default="ce", choices=["ce", "bce"],
                    help="SASRec/GRU4Rec loss: full softmax (ce) or sampled BCE (bce, far cheaper)")
    ap.add_argument("--sampled", type=int, default=0, metavar="N",
                    help="also print HR/NDCG@10 against N sampled negatives (e.g. 100; inflated)")
    ap.add_argument("--peers", default=None, choices=["recbole", "none"],
                    help="RecBole SASRec/GRU4Rec on the same split (default: recbole if installed)")
    ap.add_argument("--peer-time", type=float, default=0.0,
                    help="a RecBole peer's training budget in CPU seconds (default 0: our "
                         "corresponding model's fit CPU time); its epoch cap is --epochs as ours")
    ap.add_argument("--recbole-batch", type=int, default=1024,
                    help="RecBole train_batch_size (rows = one target each; ours: 256 sequences)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on 2 shared cores more threads oversubscribe)")
    ap.add_argument("--max-length", type=int, default=50, help="SASRec/GRU4Rec history length")
    ap.add_argument("--windows", default="last", choices=["last", "all"],
                    help="SASRec/GRU4Rec training sequences: each user's last max_length+1 items, or "
                         "the whole history in chunks (every transition a target once)")
    ap.add_argument("--item-text", default=None, metavar="CSV",
                    help="microlens-50k: titles CSV (item,title) -> TF-IDF+SVD item features for the "
                         "models named sasrec+text / gru4rec+text in --models (e.g. "
                         "../shared/data/microlens-50k/MicroLens-50k_titles.csv); list sasrec too for a "
                         "paired comparison in the same run")
    ap.add_argument("--id-dropout", type=float, default=0.5,
                    help="with --item-text: probability that an item's id embedding is dropped in a "
                         "training step (its title features alone represent it)")
    ap.add_argument("--tag", default="", help="write into results/bench_sequential/TAG/")
    args = ap.parse_args(argv)
    global OUT
    if args.tag:
        OUT = OUT / args.tag
    users_cap = args.users or (1000 if args.quick else None)
    epochs = 2 if args.quick else args.epochs
    import scipy
    import torch

    torch.set_num_threads(args.threads)
    import _recbole_peer as rbp

    rb_version = rbp.recbole_version() if args.peers != "none" else None
    if args.peers != "none" and rb_version is None:
        print("RecBole not installed: pip install recbole==1.2.1 --no-deps && pip install -e .[peers]"
              "  (the peer is skipped)")
    peers_on = rb_version is not None
    env = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "recbole": rb_version, "cpus": os.cpu_count(), "load": load_note()}
    print("environment:", json.dumps(env))
    if peers_on:
        print("RecBole compatibility shims (benchmarks/_recbole_peer.py, applied in this process "
              "only):")
        for s in rbp.SHIMS:
            print(f"  - {s['shim']}\n      because {s['why']}")
    if args.sampled:
        print(f"WARNING: sampled-{args.sampled} metrics rank the target against {args.sampled} "
              "random items only and inflate HR/NDCG many-fold (RecBole issue #1571 reports 0.1 "
              "full vs 0.8 sampled); they can reorder models (Krichene & Rendle, KDD 2020). The "
              "full-ranking numbers are the ones to compare.")
    datasets = ["ml-100k", "microlens-50k"] if args.dataset == "both" else [args.dataset]
    payload = {"environment": env, "datasets": {},
               "recbole_shims": rbp.SHIMS if peers_on else None,
               "recbole_not_needed": rbp.NOT_NEEDED if peers_on else None}
    for ds in datasets:
        payload["datasets"][ds] = run_dataset(ds, args, epochs, users_cap, peers_on)
    # correctness check: a model scoring the target highest hits, an all-ties scorer misses
    n_items = 50
    targets = np.array([3, 7, 11])
    hist = [np.array([1, 2]), np.array([5]), np.array([0, 9])]
    fake = np.zeros((3, n_items), np.float32)
    fake[np.arange(3), targets] = 1.0
    ok = leave_one_out_metrics(fake, hist, targets)["hr"].all()
    tie = leave_one_out_metrics(np.zeros((1, n_items), np.float32), hist[:1], targets[:1])
    ok = ok and tie["hr"][0] == 0.0
    samp = sampled_metrics(fake, hist, targets, 20, np.random.default_rng(0))
    ok = ok and samp["hr"].all()
    print("correctness check (perfect scorer hits, all-ties scorer misses):", "OK" if ok else "FAILED")
    payload["environment"]["load_end"] = os.getloadavg()[0]
    payload["check_ok"] = bool(ok)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(OUT / "results.json")
    _plot(payload)
    return 0 if ok else 1


def _plot(payload) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no PNG")
        return
    ds = list(payload["datasets"])
    fig, axes = plt.subplots(1, len(ds), figsize=(7.5 * len(ds), 3.8), squeeze=False)
    for ax, name in zip(axes[0], ds, strict=True):
        res = {m: r for m, r in payload["datasets"][name]["results"].items() if "validation" in r}
        names = list(res)
        x = np.arange(len(names))
        ax.bar(x - 0.2, [res[n]["validation"]["hr@10"] for n in names], 0.4, label="HR@10")
        ax.bar(x + 0.2, [res[n]["validation"]["ndcg@10"] for n in names], 0.4, label="NDCG@10")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_title(f"{name}: validation, full ranking")
        ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "results.png", dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
