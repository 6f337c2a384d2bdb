"""`recsys evaluate`: offline ranking evaluation under a split protocol."""

from __future__ import annotations

import contextlib
from pathlib import Path

from recsys.cli._common import (
    MODEL_NAMES_HELP,
    UsageError,
    _emit,
    _engine_args,
    _existing,
    _fraction,
    _model_names,
    _positive_int,
    _side_args,
    _side_files,
    log,
)


def cmd_evaluate(args) -> int:
    import numpy as np

    from recsys.app.evaluate import write_evaluation
    from recsys.app.side import read_log

    models = _model_names([m.strip() for m in args.models.split(",") if m.strip()], "--models")
    path = _existing(args.interactions, "interaction file", folder=False)
    side = _side_files(args)
    if args.protocol == "cold_items":  # items held out whole: recsys/evaluation/coldstart.py
        if side["validation"]:
            raise UsageError("--validation is not used by --protocol cold_items (nothing is tuned there); "
                             "drop it, or use --protocol predefined --test TEST --validation FILE")
        from recsys.app.side import item_side_matrices, models_without_item_features
        from recsys.data.interactions import build_dataset
        from recsys.evaluation.coldstart import cold_start_cli

        df, feats = read_log(path, sep=args.sep), None
        if side["item_features"] or side["item_text"]:
            feats = item_side_matrices(build_dataset(df), side["item_features"], side["item_text"])
            for name in models_without_item_features(models):
                log.warning("model %r cannot use item features (--item-features/--item-text): it is "
                            "evaluated without them; ease-content takes them", name)
        return cold_start_cli(args, models, path, _emit, df=df, item_features=feats)
    if (args.protocol == "predefined") != bool(args.test):
        raise UsageError("--protocol predefined needs --test TEST, and --test needs --protocol predefined")
    # any log format: a table, or one `user<TAB>item item ...` sequence per line
    df = read_log(path, sep=args.sep)
    test_df = test_path = validation_df = None
    if args.test:
        test_path = _existing(args.test, "test file", folder=False)
        test_df = read_log(test_path, sep=args.sep)
    if side["validation"]:
        validation_df = read_log(side["validation"], sep=args.sep)
    emb = None
    if args.item_embeddings:
        emb = np.load(_existing(args.item_embeddings, "item embedding file", folder=False), allow_pickle=False)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        ks = [int(x) for x in args.ks.split(",") if x.strip()]
    except ValueError as exc:
        raise UsageError(f"--ks {args.ks!r}: expected comma-separated integers, e.g. 1,5,10") from exc
    if args.engine == "local" and (args.address or args.num_actors is not None):
        raise UsageError("--address and --num-actors need --engine ray")
    evaluator, session = None, contextlib.nullcontext()
    if args.engine == "ray":  # one Ray connection for every model and fold; user blocks in actors
        from functools import partial

        from embeddings.ray_engine.cluster import ray_session
        from recsys.distributed import evaluate_ray

        evaluator = partial(evaluate_ray, num_actors=args.num_actors or 2)
        session = ray_session(args.address)
    with session:
        res = write_evaluation(df, models, args.out, protocol=args.protocol, k=args.k, test_ratio=args.test_ratio,
                               seed=args.seed, source=str(path), test_df=test_df,
                               test_source=str(test_path) if test_path else None, n_folds=args.folds,
                               n_negatives=args.negatives, metrics=metrics, ks=ks, item_embeddings=emb,
                               n_resamples=args.bootstrap, evaluator=evaluator, progress=not args.quiet,
                               users=args.users, drop_test_only_items=args.drop_test_only_items,
                               validation_df=validation_df,
                               validation_source=str(side["validation"]) if side["validation"] else None,
                               item_features=side["item_features"], item_text=side["item_text"])
    summary = res["summary"]
    cols = ["model"] + [c for c in summary.columns if c.endswith(f"@{args.k}")] + ["n_users"]
    _emit(args, {"out": str(args.out), "protocol": res["protocol"], "models": summary.to_dict("records")},
          f"Ranking: {res['protocol']['ranking']}\n" + summary[cols].to_string(index=False)
          + f"\n\nReport: {Path(args.out) / 'report.md'}")
    return 0


def add_commands(sub, add, common, fmt) -> None:
    """Add this group's subcommands to ``sub`` (``add`` makes a subcommand with --json and an example)."""
    s = add("evaluate", "Offline ranking evaluation of several models under a split protocol.",
            "recsys evaluate ../shared/data/ml-100k/u.data --protocol stratified --models ease,popularity "
            "-k 10 --out reports/ml100k\n  recsys evaluate ml-100k/u1.base --protocol predefined --test "
            "ml-100k/u1.test --models ease --out reports/u1")
    s.add_argument("interactions", metavar="INTERACTIONS", help="interaction log (the TRAIN file with predefined)")
    s.add_argument("--protocol", required=True,
                   choices=["random_holdout", "leave_last_out", "stratified", "temporal", "kfold", "predefined",
                            "cold_items"],
                   help="cold_items: --test-ratio of the items held out whole (plus that share of the "
                        "other rows), cold/warm/all and popularity-bucket tables")
    s.add_argument("--test", metavar="TEST", help="test file for --protocol predefined (e.g. MovieLens u1.test)")
    s.add_argument("--folds", type=_positive_int, default=5, help="folds for --protocol kfold (default %(default)s)")
    s.add_argument("--models", required=True, help=f"comma-separated, from: {MODEL_NAMES_HELP}; "
                   "content and hybrid fit on --item-embeddings")
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--ks", default="1,5,10,20,50", help="cut-offs of the metric-vs-K curves (default %(default)s)")
    s.add_argument("--metrics", help="comma-separated names or name@k (default: precision,recall,ndcg,map,mrr,"
                   "hit_rate,coverage,novelty; diversity with --item-embeddings)")
    s.add_argument("--item-embeddings", metavar="NPY",
                   help=".npy (n_items, d) in the dataset's item index order: intra-list diversity, and the "
                        "item vectors content and hybrid fit on")
    s.add_argument("--negatives", type=_positive_int, metavar="N",
                   help="SAMPLED ranking: test items + N random unseen items per user (papers use 100); "
                        "default is full ranking; labelled in every output")
    s.add_argument("--bootstrap", type=_positive_int, default=1000, help="bootstrap resamples for the 95%% CIs")
    s.add_argument("--test-ratio", type=_fraction, default=None,
                   help="test share (default 0.25 for stratified = Recommenders' benchmark split "
                        "python_stratified_split(ratio=0.75, filter_by='item', seed=42); 0.2 otherwise)")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--users", choices=["all", "common"], default="all",
                   help="averaging: all = every user with test items, no list counts 0 (implicit, trec_eval -c); "
                        "common = Microsoft Recommenders (nDCG over all, P/R/MAP over users in truth and predictions)")
    s.add_argument("--drop-test-only-items", action="store_true",
                   help="--protocol predefined: drop test rows of items absent from the train file "
                        "(default: keep them in the catalogue, counted as misses)")
    s.add_argument("--sep", help="column separator (default: sniffed)")
    s.add_argument("--out", required=True, metavar="REPORT_DIR")
    _side_args(s, tuning="on which every model's hyperparameters are chosen (default grids, NDCG@k) "
               "before it is fitted on the training rows; without it nothing is tuned")
    _engine_args(s)
    s.add_argument("--num-actors", type=_positive_int, default=None,
                   help="--engine ray: evaluation actors, each holding the model and matrices (default 2)")
    s.set_defaults(func=cmd_evaluate)
