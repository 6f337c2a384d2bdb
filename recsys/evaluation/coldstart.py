"""Item cold-start evaluation: test items without any training interaction.

Protocol (:func:`evaluate_cold_start`, split by :func:`recsys.data.splits.cold_item_split`):

* The model is fitted on a training matrix whose **cold** columns are empty (items held out
  whole); content models get the features of every item, cold ones included.
* For each evaluated user the model scores every item (``model.score``), training items are
  removed (-inf), and three full rankings are cut from the same scores:

  - ``all``: over every item; relevant = all the user's test items;
  - ``cold``: over the cold items only; relevant = the user's test items that are cold;
  - ``warm``: over the items with training interactions; relevant = the warm test items.

  Users without a relevant item in a table are left out of that table's means (counted in
  ``n_users``.
* **Ties** in the scores are never broken by item index (where ids were assigned by
  popularity, as TikTok's MMSSL ids in part are, index order is a popularity prior that a
  collaborative model scoring every cold item 0 would get credit for). ``ties="pessimistic"``
  (the default) ranks a relevant item below every item with an equal score, so a block of
  ties earns nothing; ``ties="random"`` orders equal scores by a seeded random permutation of
  the items (one per batch of users; the expected value of a random tie order). Column
  ``random_recall@k`` gives the expected recall of a uniformly random order beside, ``min(1,
  k / n_candidates)`` per user.
* A per-popularity-bucket table (on the ``all`` ranking): items are bucketed by their training
  count (bucket ``cold`` = no training interaction; warm items in ``n_buckets`` quantile
  buckets of equal item count, least popular first). Per bucket: ``n_items``, ``n_test``
  (test interactions), ``recall@k`` = hits of the bucket's test items in the top-k / ``n_test``
  (micro average), ``share@k`` = fraction of all top-k slots filled by the bucket's items. A
  model that lets new items crowd out warm ones shows a ``cold`` share far above its recall
  share.

This follows the item cold-start setting of Volkovs et al., "DropoutNet", NeurIPS 2017 (cold
items ranked against each other) and reports the mixed ranking beside it, the one a service
actually shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.metrics import compute_metrics

__all__ = ["ColdStartResult", "evaluate_cold_start", "TABLES"]

logger = logging.getLogger(__name__)

TABLES = ("all", "cold", "warm")

#: tie rules of :func:`evaluate_cold_start` (item-index order is deliberately not one of them)
TIE_RULES = ("pessimistic", "random")


@dataclass
class ColdStartResult:
    """Result of :func:`evaluate_cold_start`.

    Attributes
    ----------
    summary : pandas.DataFrame
        Rows ``all``, ``cold``, ``warm`` (column ``items``), metric columns ``"name@k"`` (means
        over the users of that row), ``random_recall@k`` (expected recall of a random order),
        ``n_users`` and ``n_test`` (relevant interactions).
    per_user : dict[str, pandas.DataFrame]
        Per table: ``user_index`` + metric columns (for paired tests between models).
    buckets : pandas.DataFrame
        ``bucket`` (``cold``, ``q1`` least popular ... ``qN``), ``min_count``, ``max_count``,
        ``n_items``, ``n_test``, ``recall@k``, ``share@k``.
    k : int
    n_cold_items, n_warm_items : int
    """

    summary: pd.DataFrame
    per_user: dict
    buckets: pd.DataFrame
    k: int
    n_cold_items: int
    n_warm_items: int


def _buckets(counts: np.ndarray, n_buckets: int) -> tuple[np.ndarray, list[str]]:
    """Bucket id per item: 0 = cold (count 0), 1..n_buckets = popularity quantiles of warm."""
    bucket = np.zeros(counts.size, dtype=np.int64)
    warm = np.flatnonzero(counts > 0)
    if warm.size:
        order = warm[np.argsort(counts[warm], kind="stable")]
        parts = np.array_split(order, min(n_buckets, warm.size))
        for b, part in enumerate(parts, start=1):
            bucket[part] = b
    labels = ["cold"] + [f"q{b}" for b in range(1, int(bucket.max()) + 1)]
    return bucket, labels


def evaluate_cold_start(model, train_user_items, test_user_items, *, k: int = 20,
                        metrics=("recall", "ndcg"), n_buckets: int = 4,
                        batch_size: int = 1024, ties: str = "pessimistic",
                        seed: int = 0) -> ColdStartResult:
    """Cold / warm / all full-ranking metrics and a popularity-bucket table (module docstring).

    Parameters
    ----------
    model : recsys.models.Recommender
        Fitted on ``train_user_items``; ``score(rows, user_index)`` -> (n, n_items).
    train_user_items, test_user_items : scipy.sparse matrix, (n_users, n_items)
        Same indices. Items with no entry in ``train_user_items`` are the cold items.
    k : int
        Cut-off of every metric.
    metrics : iterable of str
        Keys of :data:`recsys.evaluation.metrics.METRICS` (each at ``k``).
    n_buckets : int
        Popularity quantile buckets of the warm items (>= 1).
    batch_size : int
        Users scored per call (memory: batch_size x n_items float32).
    ties : {"pessimistic", "random"}
        Order of items with equal scores (module docstring): ``"pessimistic"`` puts the user's
        relevant items below every item scored the same; ``"random"`` uses a permutation drawn
        from ``seed``. Never the item index.
    seed : int
        Seed of the ``"random"`` tie order.

    Returns
    -------
    ColdStartResult

    Raises
    ------
    ValueError
        Non-sparse or differently shaped matrices, ``k``/``n_buckets``/``batch_size`` < 1, an
        unknown ``ties``, no
        cold item in ``train_user_items`` (use :func:`recsys.evaluation.evaluator.evaluate` then), or a
        model whose scores have the wrong shape.
    """
    for name, v in (("k", k), ("n_buckets", n_buckets), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    if ties not in TIE_RULES:
        raise ValueError(f"ties={ties!r}: expected one of {list(TIE_RULES)} (item-index order is "
                         "not offered: it credits a model for how ids were assigned)")
    rng = np.random.default_rng(seed)
    if not (sp.issparse(train_user_items) and sp.issparse(test_user_items)):
        raise ValueError("train_user_items and test_user_items must be scipy.sparse matrices; "
                         "build them with recsys.data.interactions.Dataset.to_user_items")
    train = sp.csr_matrix(train_user_items)
    test = sp.csr_matrix(test_user_items)
    if train.shape != test.shape:
        raise ValueError(f"train_user_items has shape {train.shape} but test_user_items "
                         f"{test.shape}; build both with the same Dataset")
    n_users, n_items = train.shape
    counts = np.bincount(train.indices[train.data != 0], minlength=n_items)
    cold = counts == 0
    if not cold.any():
        raise ValueError("train_user_items has no item without interactions, so there is no "
                         "cold item; fix: split with recsys.data.splits.cold_item_split")
    keys = [f"{m}@{int(k)}" for m in metrics]
    test_pos = test.copy()
    test_pos.data = (test_pos.data > 0).astype(np.float32)
    test_pos.eliminate_zeros()
    masks = {"all": np.ones(n_items, bool), "cold": cold, "warm": ~cold}
    rel = {t: test_pos @ sp.diags(m.astype(np.float32)) for t, m in masks.items()}
    rel = {t: sp.csr_matrix(r) for t, r in rel.items()}
    for r in rel.values():
        r.eliminate_zeros()
    users = np.flatnonzero(np.diff(test_pos.indptr) > 0)
    bucket, labels = _buckets(counts, int(n_buckets))
    hits = np.zeros(len(labels), dtype=np.int64)
    slots = np.zeros(len(labels), dtype=np.int64)
    rows_out = {t: [] for t in TABLES}
    rand_out = {t: [] for t in TABLES}
    vals_out = {t: {key: [] for key in keys} for t in TABLES}
    kk = int(k)
    for start in range(0, users.size, int(batch_size)):
        batch = users[start:start + int(batch_size)]
        tr = train[batch]
        s = np.array(model.score(tr, batch), dtype=np.float32, copy=True)
        if s.shape != (batch.size, n_items):
            raise ValueError(f"{type(model).__name__}.score returned shape {s.shape}, expected "
                             f"({batch.size}, {n_items})")
        s[~np.isfinite(s)] = -np.inf
        r_idx = np.repeat(np.arange(batch.size), np.diff(tr.indptr))
        s[r_idx, tr.indices] = -np.inf
        for t in TABLES:
            rt = rel[t][batch]
            has = np.diff(rt.indptr) > 0
            if not has.any():
                continue
            st = s[has].copy()
            st[:, ~masks[t]] = -np.inf
            if ties == "pessimistic":  # relevant items last within a block of equal scores
                second = rt[np.flatnonzero(has)].toarray() > 0
            else:
                second = np.broadcast_to(rng.permutation(n_items), st.shape)
            ids = _topk_ids(st, kk, second)
            for key, v in compute_metrics(ids, rt[np.flatnonzero(has)], keys).items():
                vals_out[t][key].append(v)
            rows_out[t].append(batch[has])
            n_cand = np.isfinite(st).sum(axis=1)
            rand_out[t].append(np.minimum(1.0, kk / np.maximum(n_cand, 1)))
            if t == "all":
                ok = ids >= 0
                hit = np.asarray(rt[np.flatnonzero(has)][np.repeat(np.arange(ids.shape[0]), kk)[
                    ok.ravel()], ids[ok]]).ravel() > 0
                np.add.at(slots, bucket[ids[ok]], 1)
                np.add.at(hits, bucket[ids[ok]][hit], 1)
    summary, per_user = [], {}
    n_test_b = np.bincount(bucket[test_pos.indices], minlength=len(labels))
    for t in TABLES:
        u = np.concatenate(rows_out[t]) if rows_out[t] else np.zeros(0, np.int64)
        pu = pd.DataFrame({"user_index": u.astype(np.int64)})
        row = {"items": t}
        for key in keys:
            v = np.concatenate(vals_out[t][key]) if vals_out[t][key] else np.zeros(0)
            pu[key] = v
            row[key] = float(np.mean(v)) if v.size else float("nan")
        rnd = np.concatenate(rand_out[t]) if rand_out[t] else np.zeros(0)
        row[f"random_recall@{kk}"] = float(np.mean(rnd)) if rnd.size else float("nan")
        row["n_users"] = int(u.size)
        row["n_test"] = int(rel[t].nnz)
        summary.append(row)
        per_user[t] = pu
    total_slots = max(int(slots.sum()), 1)
    btab = pd.DataFrame({
        "bucket": labels,
        "min_count": [int(counts[bucket == b].min()) if (bucket == b).any() else 0
                      for b in range(len(labels))],
        "max_count": [int(counts[bucket == b].max()) if (bucket == b).any() else 0
                      for b in range(len(labels))],
        "n_items": np.bincount(bucket, minlength=len(labels)),
        "n_test": n_test_b,
        f"recall@{kk}": np.divide(hits, n_test_b, out=np.full(len(labels), np.nan),
                                  where=n_test_b > 0),
        f"share@{kk}": slots / total_slots,
    })
    return ColdStartResult(summary=pd.DataFrame(summary), per_user=per_user, buckets=btab, k=kk,
                           n_cold_items=int(cold.sum()), n_warm_items=int((~cold).sum()))


def _topk_ids(scores: np.ndarray, k: int, tie_key: np.ndarray) -> np.ndarray:
    """Top-k item indices per row by descending score, equal scores by ascending ``tie_key``
    (same shape as ``scores``), -inf entries as -1 padding."""
    k = min(int(k), scores.shape[1])
    order = np.lexsort((tie_key, -scores), axis=-1)[:, :k]
    vals = np.take_along_axis(scores, order, axis=1)
    ids = order.astype(np.int64)
    ids[~np.isfinite(vals)] = -1
    if ids.shape[1] < k:
        ids = np.pad(ids, ((0, 0), (0, k - ids.shape[1])), constant_values=-1)
    return ids


def paired_cold_start(a: ColdStartResult, b: ColdStartResult, metric: str, *,
                      table: str = "cold", test: str = "t") -> dict:
    """Paired test (:func:`recsys.evaluation.significance.paired_test`) of two models on one table.

    Parameters
    ----------
    a, b : ColdStartResult
        Same split (their ``per_user[table]`` hold the same users, in the same order).
    metric : str
        ``"name@k"`` column, e.g. ``"recall@20"``.
    table : str
        ``"all"``, ``"cold"`` or ``"warm"``.
    test : str
        As for :func:`recsys.evaluation.significance.paired_test`.

    Returns
    -------
    dict
        The paired test's dict (``mean_a``, ``mean_b``, ``p_value``, ...).

    Raises
    ------
    ValueError
        The two results hold different users (not the same split).
    """
    from recsys.evaluation.significance import paired_test

    pa, pb = a.per_user[table], b.per_user[table]
    if not np.array_equal(pa["user_index"].to_numpy(), pb["user_index"].to_numpy()):
        raise ValueError(f"the two results have different users in table {table!r}; evaluate "
                         "both models on the same cold_item_split")
    return paired_test(pa[metric].to_numpy(), pb[metric].to_numpy(), test=test)


def write_cold_start(df: pd.DataFrame, models, out, *, item_fraction: float = 0.2,
                     warm_test_ratio: float = 0.2, seed: int = 42, k: int = 10,
                     metrics=("recall", "ndcg"), item_embeddings=None, source: str | None = None,
                     item_features=None) -> dict:
    """Split by :func:`recsys.data.splits.cold_item_split`, fit and evaluate models, write a report.

    Every model is fitted on the training rows with ``item_embeddings`` given both as the
    content models' embeddings (``content``, ``hybrid``) and as ``ease-content``'s features
    (unless ``item_features`` are given for it).
    Writes ``out/cold_start.json`` (protocol, per model the summary and bucket tables, paired
    t-tests of every model against the first one on each table) and ``out/report.md``.

    Parameters
    ----------
    df : pandas.DataFrame
        Whole interaction log (``user_id``, ``item_id``).
    models : sequence of str
        Registry names (:data:`recsys.models.MODELS`).
    out : path
        Report folder (created).
    item_fraction, warm_test_ratio, seed
        See :func:`recsys.data.splits.cold_item_split`.
    k : int
    metrics : iterable of str
    item_embeddings : numpy.ndarray, optional
        float (n_items, d) in the item index order of ``build_dataset(df)``.
    source : str, optional
        Name of the log, for the report.
    item_features : list of numpy.ndarray, optional
        Feature matrices (n_items, d_m) in the same item order, for the models that take them
        (``ease-content``); instead of ``item_embeddings`` there.

    Returns
    -------
    dict
        ``protocol`` (dict), ``summary`` (DataFrame: model, items, metrics, n_users, n_test),
        ``buckets`` (DataFrame with a model column), ``significance`` (DataFrame).

    Raises
    ------
    ValueError
        A content model without ``item_embeddings``, embeddings with the wrong row count, and
        the errors of the split and of :func:`evaluate_cold_start`.
    """
    from pathlib import Path

    from embeddings._io import atomic_path, write_json
    from recsys.data.interactions import build_dataset
    from recsys.data.splits import cold_item_split
    from recsys.evaluation.report import markdown_table
    from recsys.models import fit_model, make_model

    ds = build_dataset(df)
    if item_embeddings is not None and np.shape(item_embeddings)[0] != ds.n_items:
        raise ValueError(f"item_embeddings has {np.shape(item_embeddings)[0]} rows, the log has "
                         f"{ds.n_items} items; fix: one row per item in sorted item id order")
    train_df, test_df, cold = cold_item_split(df, item_fraction, warm_test_ratio=warm_test_ratio,
                                              seed=seed)
    train, test = ds.to_user_items(train_df), ds.to_user_items(test_df)
    results, summaries, buckets = {}, [], []
    for name in models:
        feats = item_features if item_features is not None else (
            None if item_embeddings is None else [item_embeddings])
        model = fit_model(make_model(name), train, item_embeddings=item_embeddings,
                          item_features=feats)
        res = evaluate_cold_start(model, train, test, k=k, metrics=metrics)
        results[name] = res
        summaries.append(res.summary.assign(model=name))
        buckets.append(res.buckets.assign(model=name))
        logger.info("cold start: %s done", name)
    summary = pd.concat(summaries, ignore_index=True)
    summary = summary[["model"] + [c for c in summary.columns if c != "model"]]
    bucket_tab = pd.concat(buckets, ignore_index=True)
    bucket_tab = bucket_tab[["model"] + [c for c in bucket_tab.columns if c != "model"]]
    keys = [f"{m}@{int(k)}" for m in metrics]
    sig = []
    base = list(models)[0]
    for name in list(models)[1:]:
        for t in TABLES:
            if results[name].per_user[t].shape[0] < 2:
                continue
            for key in keys:
                p = paired_cold_start(results[name], results[base], key, table=t)
                sig.append({"model": name, "baseline": base, "items": t, "metric": key,
                            "mean_diff": p["mean_diff"], "p_value": p["p_value"], "n": p["n"]})
    sig = pd.DataFrame(sig)
    proto = {"protocol": "cold_items", "item_fraction": float(item_fraction),
             "warm_test_ratio": float(warm_test_ratio), "seed": int(seed), "k": int(k),
             "n_cold_items": int(len(cold)), "n_items": int(ds.n_items),
             "n_users": int(ds.n_users), "n_train": int(len(train_df)),
             "n_test": int(len(test_df)), "source": source,
             "ranking": "full ranking, training items removed; cold = over cold items only, "
                        "warm = over warm items only, all = over every item",
             "ties": "pessimistic: a relevant item ranks below every item with an equal score "
                     "(never item-index order)"}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "cold_start.json", {"protocol": proto,
                                         "summary": summary.to_dict("records"),
                                         "buckets": bucket_tab.to_dict("records"),
                                         "significance": sig.to_dict("records")})
    md = [f"# Item cold start: {source or 'interactions'}", "",
          f"{proto['n_cold_items']} of {proto['n_items']} items held out whole (seed {seed}), "
          f"{proto['ranking']}; ties {proto['ties']}.", "", "## Cold / warm / all", "",
          markdown_table(summary), "",
          "## Popularity buckets (training count; all-items ranking)", "",
          markdown_table(bucket_tab), ""]
    if len(sig):
        md += [f"## Paired t-tests against {base}", "",
               markdown_table(sig, "{:.4g}"), ""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    return {"protocol": proto, "summary": summary, "buckets": bucket_tab, "significance": sig}


def cold_start_cli(args, models, path, emit, *, df=None, item_features=None) -> int:
    """``recsys evaluate --protocol cold_items``: :func:`write_cold_start` from parsed args;
    ``df`` (default: ``path`` read as a table) and ``item_features`` (matrices in
    ``build_dataset(df)`` item order) come from the command's module."""
    from recsys.data.interactions import load_interactions

    if df is None:
        df = load_interactions(path, sep=args.sep)
    emb = None
    if args.item_embeddings:
        emb = np.load(args.item_embeddings, allow_pickle=False)
    feats = item_features
    res = write_cold_start(df, models, args.out, item_fraction=args.test_ratio,
                           warm_test_ratio=args.test_ratio, seed=args.seed, k=args.k,
                           item_embeddings=emb, source=str(path), item_features=feats)
    summary = res["summary"]
    emit(args, {"out": str(args.out), "protocol": res["protocol"],
                "models": summary.to_dict("records")},
         f"Ranking: {res['protocol']['ranking']}\n" + summary.to_string(index=False)
         + f"\n\nReport: {args.out}/report.md")
    return 0
