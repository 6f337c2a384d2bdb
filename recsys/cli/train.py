"""`recsys train` and `recsys recommend`: rankers on an interaction log."""

from __future__ import annotations

from pathlib import Path

from recsys.cli._common import (
    MODEL_NAMES_HELP,
    UsageError,
    _emit,
    _existing,
    _model_names,
    _params,
    _positive_int,
    _side_args,
    _side_files,
)


def cmd_train(args) -> int:
    from recsys.app import stages
    from recsys.app.side import item_side_matrices, read_log
    from recsys.data.interactions import build_dataset
    from recsys.ranking.artifacts import save_trained

    _model_names([args.model], "--model")
    path = _existing(args.interactions, "interaction file", folder=False)
    side = _side_files(args)
    params = _params(args.param)
    # further feedback columns (KuaiRand's is_like, long_view) for the learned stage's heads
    signals = None
    if args.model == "ltr":
        from recsys.ranking.ltr_training import objective_names

        try:
            signals = objective_names(params.get("objectives"))
        except ValueError as exc:
            raise UsageError(f"--param {exc}") from exc
    # one user per line (`user<TAB>item item ...`, MicroLens): positions become the timestamps
    df = read_log(path, sep=args.sep, signals=signals)
    options, dataset = {}, None
    if args.embeddings:
        from recsys.ranking.training import load_item_embeddings

        dataset = build_dataset(df)
        options["item_embeddings"] = load_item_embeddings(
            _existing(args.embeddings, "embedding folder", folder=True), dataset.item_ids)
    if side["validation"]:
        options["validation"] = read_log(side["validation"], sep=args.sep, signals=signals)
    if side["item_features"] or side["item_text"]:
        dataset = dataset or build_dataset(df)
        options["item_features"] = item_side_matrices(dataset, side["item_features"], side["item_text"])
    if args.tune:
        options["tune"] = True
        options["progress"] = not args.quiet
    if args.grid:
        options["grid"] = _grid(args, params)
    if args.two_stage:
        options["two_stage"] = True
    tm = stages.train_model(df, args.model, params, dataset=dataset, source=str(path), **options)
    save_trained(args.out, tm)
    tu = tm.info.get("tuning")
    tuned = (f"Tuned on a validation split in {tu['seconds']:.2f} s ({len(tu['table'])} grid points, best "
             f"{tu['metric']} {tu['best_score']:.4f}): chosen {tu['best_params']}\n" if tu else "")
    edges = (tu or {}).get("at_grid_edge") or {}
    if edges:
        tuned += ("At the edge of the grid: " + ", ".join(
            f"{p}={tu['best_params'][p]} ({side} tried)" for p, side in edges.items())
            + "; the optimum may lie beyond: try e.g. --grid " + " --grid ".join(
            f"{p}=[...]" for p in edges) + "\n")
    _emit(args, {"out": str(args.out), **tm.info},
          f"{tuned}{_ltr_summary(tm.info.get('ranker'))}Trained {args.model} on {tm.info['n_interactions']} interactions ({tm.info['n_users']} users x "
          f"{tm.info['n_items']} items) in {tm.info['fit_seconds']:.2f} s: {args.out}")
    return 0


def _grid(args, params: dict) -> dict:
    """The tuning grid of ``--grid PARAM=[v1, v2, ...]`` options: the model's default grid with
    those parameters' values replaced (or added)."""
    import json

    from recsys.models import MODELS
    from recsys.ranking.tuning import DEFAULT_GRIDS

    if not args.tune:
        raise UsageError("--grid sets the values --tune tries; fix: add --tune")
    if args.model == "ltr":
        raise UsageError("--grid does not apply to --model ltr (its sources are tuned on their "
                         "default grids); fix: tune a source alone with --grid, then pass its "
                         "values, or drop --grid")
    names = MODELS[args.model.lower()]._get_param_names()
    grid = dict(DEFAULT_GRIDS.get(args.model.lower(), {}))
    for item in args.grid:
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            values = json.loads(value) if sep else None
        except json.JSONDecodeError:
            values = None
        if not isinstance(values, list) or not values:
            raise UsageError(f"--grid {item!r}: expected PARAM=[v1, v2, ...], e.g. "
                             "--grid 'regularization=[60, 100, 150]'")
        if key not in names:
            raise UsageError(f"--grid {key!r}: {args.model} has no such parameter; its parameters: "
                             f"{', '.join(names)}")
        if key in params:
            raise UsageError(f"--grid {key!r} and --param {key}=... both given; fix: keep one "
                             "(--param fixes the value, --grid searches values)")
        grid[key] = values
    return grid


def _ltr_summary(rep: dict | None) -> str:
    """Lines on what a learned stage serves: stage-1 recall, the guard's validation NDCG of the
    ranker and of each source, and (when a source was no worse) that it serves that source."""
    if not rep or "guard_ndcg@10" not in rep:
        return ""
    guard = rep["guard_ndcg@10"]
    sources = ", ".join(f"{n} {v:.4f}" for n, v in guard.items() if n != "ltr")
    recall = ", ".join(f"{n} {v:.3f}" for n, v in rep.get("recall_at_budget", {}).items())
    top = sorted(rep.get("feature_importance_gain", {}).items(), key=lambda kv: -kv[1])[:3]
    total = sum(rep.get("feature_importance_gain", {}).values()) or 1.0
    lines = [f"Candidate recall (held-out items each source proposes within its budget): {recall}; "
             f"all sources {rep['recall_union']:.3f}",
             f"Validation NDCG@10 on the early-stopping users: ranker {guard['ltr']:.4f} "
             f"(best iteration {rep['best_iteration']}); sources {sources}"]
    if top:
        lines.append("Top features (% of gain): " + ", ".join(f"{f} {100 * g / total:.1f}" for f, g in top))
    if rep.get("fallback"):
        lines.append(f"Serving {rep['fallback']!r} alone: the ranker did not beat it on those users "
                     "(model.json 'ranker' has the numbers)")
    else:
        lines.append("Serving the learned ranker")
    return "\n".join(lines) + "\n"


def cmd_recommend(args) -> int:
    from embeddings._io import write_parquet
    from recsys.app import stages
    from recsys.ranking.artifacts import load_trained

    tm = load_trained(_existing(args.model_dir, "model folder", folder=True))
    users = None if args.all_users else [args.user]
    try:
        recs = stages.recommend_users(tm, users, k=args.k, two_stage=True if args.two_stage else None)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    if args.out:
        out = Path(args.out)
        if out.suffix == ".parquet":
            write_parquet(out, recs)
        else:
            from embeddings._io import atomic_path

            with atomic_path(out) as tmp:
                recs.to_csv(tmp, index=False, sep="\t" if out.suffix in (".tsv", ".txt") else ",")
    payload = recs.to_dict("records") if not args.all_users or not args.out else {"out": str(args.out),
                                                                                  "n_rows": len(recs)}
    human = (f"Wrote {len(recs)} rows for {recs['user_id'].nunique()} users to {args.out}" if args.out else
             recs.to_string(index=False))
    if "fallback" in recs and recs["fallback"].notna().any() and not args.all_users:
        human = (f"NOTE: user {args.user!r} is not in the model's training data: these are the popularity "
                 f"fallback (the items most training users interacted with), marked in the fallback column.\n"
                 + human)
    _emit(args, payload, human)
    return 0


def add_commands(sub, add, common, fmt) -> None:
    """Add this group's subcommands to ``sub`` (``add`` makes a subcommand with --json and an example)."""
    s = add("train", "Train a ranker on an interaction log (CSV/TSV/Parquet/MovieLens u.data, or one "
            "`user<TAB>item item ...` sequence per line).",
            "recsys train ../shared/data/ml-100k/u.data --model ease --out models/ease --param l2=500")
    s.add_argument("interactions", metavar="INTERACTIONS")
    s.add_argument("--model", required=True, help=MODEL_NAMES_HELP)
    s.add_argument("--out", required=True, metavar="MODEL_DIR")
    s.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="model parameter (repeatable; values read as JSON when they parse). With "
                        "--model ltr: objectives=is_like,long_view trains one ranker head per "
                        "feedback column of the log's header besides the interaction head, and "
                        "objective_weights='{\"interaction\": 1, \"is_like\": 2}' blends them "
                        "(weighted sum of per-user standardised head scores; default 1 each)")
    s.add_argument("--sep", help="column separator (default: sniffed)")
    s.add_argument("--tune", action="store_true",
                   help="choose hyperparameters on a validation split carved from the training data "
                        "(recorded in MODEL_DIR/model.json): each user's latest item for the next-item models "
                        "(sasrec, gru4rec, lastitem, windowknn), a stratified 25%% holdout otherwise; "
                        "--param values stay fixed; with --model ltr: "
                        "every source tuned, the ranker trained and early-stopped on that validation split")
    s.add_argument("--grid", action="append", metavar="PARAM=[V1,V2,...]",
                   help="with --tune: values to try for one parameter instead of its default grid "
                        "(repeatable; the other parameters keep theirs), e.g. --grid "
                        "'regularization=[60, 100, 150]' when the chosen value sat at the edge of the "
                        "default grid (train says so); `python -c \"from recsys.ranking.tuning import "
                        "DEFAULT_GRIDS; print(DEFAULT_GRIDS)\"` lists the defaults")
    s.add_argument("--embeddings", metavar="EMB_DIR",
                   help="embedding folder of the items (video_id = item_id): needed by content and hybrid, "
                        "enables the content source of --two-stage")
    s.add_argument("--two-stage", action="store_true",
                   help="serve through candidates (collaborative, content, popularity) -> ranking; with "
                        "--tune the second stage is learned (LightGBM ranking trees, as --model ltr) when it beats "
                        "its sources on the validation split, else the fusion chosen there; without "
                        "--tune the collaborative order")
    _side_args(s, tuning="used by --tune instead of carving one from the training data; with --model "
                         "ltr (no --tune needed) the ranker learns from it, adding the validation "
                         "period's popular items as a source (label-popularity); evaluate such a "
                         "model on a later test file, not on this one")
    s.set_defaults(func=cmd_train)

    s = add("recommend", "Top-k unseen items for one user or all users.",
            "recsys recommend models/ease --user 196 -k 10")
    s.add_argument("model_dir", metavar="MODEL_DIR")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="USER_ID")
    who.add_argument("--all-users", action="store_true")
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--out", metavar="FILE", help="write .parquet, .csv or .tsv")
    s.add_argument("--two-stage", action="store_true",
                   help="two-stage results with their sources (default: as the model was trained)")
    s.set_defaults(func=cmd_recommend)
