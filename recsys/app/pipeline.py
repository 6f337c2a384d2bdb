"""``recsys run PIPELINE.toml``: every stage, end to end, into one output folder.

Output folder::

    OUT/
      settings.toml           resolved settings of every stage (printed at start too)
      run.json                status ("running" -> "complete" / "failed"), seconds per stage, counts
      run.log                 the log, with per-stage and per-shard timings
      embeddings/             embedding shards + manifest (resumable)
      index/                  FAISS index folder (synthetic clips included after backfill)
      models/NAME/            trained rankers (``recsys recommend`` reads them)
      recommendations.parquet top-k unseen items per user from the best model
      metrics.json            evaluation summary + protocol
      evaluation/             the ``recsys evaluate`` report folder: run.<model>.trec (top-k per
                              evaluated user, every model), qrels.trec, metrics with bootstrap CIs,
                              paired significance, protocol.json, report.md
      per_user_metrics.parquet
      queries.json, queries.parquet   per-query confidence, backfill, results with provenance
      synthetic/              generated clips (mp4)
      errors.csv              inputs skipped, with the reason
      plots/*.png
      report.md               written last: its presence means the run completed

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from embeddings._io import write_json, write_parquet
from recsys.app import report, stages
from recsys.app.config import ON_DISK, check_input_files, to_toml

log = logging.getLogger(__name__)

__all__ = ["run_pipeline", "check_rerun", "RunResult", "PipelineError"]


class PipelineError(RuntimeError):
    """A stage could not produce anything usable (for example, no clip could be decoded)."""


@dataclass
class RunResult:
    """What a pipeline run produced: output folder, report path, per-stage seconds, counts."""

    out_dir: Path
    report: Path | None = None
    seconds: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    n_errors: int = 0
    random_weights: bool = False


@contextlib.contextmanager
def _log_to(path: Path):
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level, logging.INFO) if old_level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def run_pipeline(cfg: dict, out_dir: str | Path, *, strict: bool = False, progress: bool = True) -> RunResult:
    """Run every configured stage into ``out_dir``.

    Parameters
    ----------
    cfg : dict
        Resolved settings from :func:`recsys.app.config.load_pipeline`.
    out_dir : path-like
        Output folder (created; an earlier unfinished run there is resumed stage by stage:
        finished embedding shards are kept).
    strict : bool
        Fail on the first skipped input instead of recording it and going on.
    progress : bool
        Progress bars on long stages.

    Returns
    -------
    RunResult

    Raises
    ------
    PipelineError
        When no clip could be embedded, or with ``strict`` when any input was skipped.
    recsys.app.config.PipelineConfigError
        Before anything is written, when a file named in ``[interactions]`` or ``[evaluate]``
        does not exist.
    embeddings.store.EmbeddingFolderError
        Before anything in ``out_dir`` is touched or a model is loaded, when ``out_dir`` holds
        embeddings made with another encoder, catalog or sampling (see :func:`check_rerun`).
    """
    out = Path(out_dir)
    check_input_files(cfg)  # a missing validation/test/feature file fails before anything runs
    check_rerun(cfg, out)  # a refused run must change nothing: check before touching the folder
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / "report.md").unlink()  # a stale report must not vouch for this run
    (out / "settings.toml").write_text(to_toml(cfg), encoding="utf-8")
    result = RunResult(out_dir=out)
    status = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(out / "run.json", status)
    with _log_to(out / "run.log"):
        log.info("resolved settings:\n%s", to_toml(cfg))
        try:
            _run(cfg, out, result, strict=strict, progress=progress)
        except BaseException as e:
            write_json(out / "run.json", {**status, "status": "failed", "error": f"{type(e).__name__}: {e}",
                                          "seconds": result.seconds})
            raise
    write_json(out / "run.json", {**status, "status": "complete", "seconds": result.seconds,
                                  "counts": result.counts, "random_weights": result.random_weights,
                                  "n_errors": result.n_errors})
    return result


def _same_pretrained(old, new) -> bool:
    """Whether a recorded ``pretrained`` (tag as open_clip spells it, or absolute checkpoint path) is ``new``."""
    if old is None or new is None:
        return old == new
    old, new = str(old), str(new)
    if old == new or old.lower().replace("-", "_") == new.lower().replace("-", "_"):
        return True
    return Path(new).is_file() and str(Path(new).resolve()) == old


def check_rerun(cfg: dict, out: str | Path) -> None:
    """Refuse, before anything is written or loaded, a run into a folder made with other embedding settings.

    Compares ``out/embeddings/job.json`` (written by an earlier run) with what ``cfg`` would
    write: encoder model, pretrained weights, precision, random-weight seed, frame sampling,
    shard size, decode size and the catalog's inputs. These are the differences the embedding
    job itself refuses after the encoder has loaded; checking them first keeps the earlier
    run's ``report.md`` and ``settings.toml`` intact and costs no model load. Settings that
    need the loaded encoder (its resolved device) are still checked by the job.

    Parameters
    ----------
    cfg : dict
        Resolved settings (:func:`recsys.app.config.load_pipeline`).
    out : path-like
        The run's output folder; nothing happens when it holds no embedding job.

    Raises
    ------
    embeddings.store.EmbeddingFolderError
        Naming each differing setting with the recorded and the requested value.
    embeddings.video.catalog.CatalogError
        When the catalog's video folder or captions cannot be read.
    """
    from embeddings.store import EmbeddingFolderError
    from embeddings.video.catalog import discover_inputs, inputs_fingerprint
    from embeddings.video.sampling import FrameSampler

    cat, enc = cfg["catalog"], cfg["encoder"]
    jpath = Path(out) / "embeddings" / "job.json"
    if not cat.get("videos") or not jpath.is_file():
        return
    old = json.loads(jpath.read_text(encoding="utf-8"))
    old_enc, old_set = old.get("encoder") or {}, old.get("settings") or {}
    inputs = discover_inputs(cat["videos"], cat["captions"])
    pretrained = stages.resolve_pretrained(enc["model"], enc["pretrained"])
    diff = []
    if old_enc.get("model") != enc["model"]:
        diff.append(("encoder.model", old_enc.get("model"), enc["model"]))
    if not _same_pretrained(old_enc.get("pretrained"), pretrained):
        diff.append(("encoder.pretrained", old_enc.get("pretrained"), pretrained))
    if old_enc.get("precision") != enc["precision"]:
        diff.append(("encoder.precision", old_enc.get("precision"), enc["precision"]))
    if old_enc.get("random_weights") and str(pretrained).lower() == "none" and old_enc.get("seed") != enc["seed"]:
        diff.append(("encoder.seed", old_enc.get("seed"), enc["seed"]))
    sampling = FrameSampler("uniform", n_frames=cat["frames"]).describe()
    for key, new in (("sampling", sampling), ("shard_size", int(cat["shard_size"])), ("max_side", cat["max_side"])):
        if key in old_set and json.loads(json.dumps(new)) != old_set[key]:
            diff.append((f"catalog {key}", old_set[key], new))
    if old.get("inputs_sha256") not in (None, inputs_fingerprint(inputs)):
        diff.append(("catalog inputs", f"{old.get('n_inputs')} recorded inputs",
                     f"{len(inputs)} inputs under {cat['videos']}"))
    if diff:
        lines = "; ".join(f"{k}: {a!r} there, {b!r} asked" for k, a, b in diff)
        raise EmbeddingFolderError(
            f"{out} holds a run whose embeddings were made with other settings ({lines}); nothing was changed. "
            "Pass another --out, or delete the folder to start over.")


class _Timer:
    def __init__(self, result: RunResult, name: str):
        self.result, self.name = result, name

    def __enter__(self):
        log.info("stage %s: start", self.name)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        s = time.perf_counter() - self.t0
        self.result.seconds[self.name] = round(s, 3)
        log.info("stage %s: %.2f s", self.name, s)


def _caption(result: dict) -> str:
    """Caption of a result row for the report; a generated clip shows its prompt."""
    cap = result.get("caption")
    if isinstance(cap, str) and cap:
        return cap
    prompt = result.get("prompt") or (result.get("provenance") or {}).get("prompt")
    return f"(generated) {prompt}" if isinstance(prompt, str) and prompt else ""


def _run(cfg: dict, out: Path, result: RunResult, *, strict: bool, progress: bool) -> None:
    sections: list[tuple[str, str]] = []
    cat, enc_cfg = cfg["catalog"], cfg["encoder"]
    encoder = index = None
    errors = pd.DataFrame(columns=["video_id", "path", "error"])

    if cat.get("videos"):
        with _Timer(result, "catalog+encode"):
            encoder, summary = stages.embed_catalog(
                cat["videos"], out / "embeddings", captions=cat["captions"], model=enc_cfg["model"],
                pretrained=enc_cfg["pretrained"], device=enc_cfg["device"], precision=enc_cfg["precision"],
                seed=enc_cfg["seed"], text_tower=enc_cfg["text_tower"], frames=cat["frames"], batch_size=enc_cfg["batch_size"],
                max_side=cat["max_side"], shard_size=cat["shard_size"], num_workers=cat["num_workers"],
                progress=progress)
        errors = summary.errors
        result.n_errors = len(errors)
        result.random_weights = bool(encoder.random_weights)
        errors.to_csv(out / "errors.csv", index=False)
        from embeddings.store import EmbeddingFolder

        folder = EmbeddingFolder.open(out / "embeddings")
        n_videos = int(folder.manifest["n_videos"])
        result.counts.update({"inputs": int(folder.manifest["n_inputs"]), "videos_embedded": n_videos,
                              "inputs_skipped": len(errors)})
        if n_videos == 0:
            raise PipelineError(f"no clip under {cat['videos']} could be decoded; see {out / 'errors.csv'}")
        if strict and len(errors):
            raise PipelineError(f"{len(errors)} input(s) were skipped and --strict is set; see {out / 'errors.csv'}")
        with _Timer(result, "index"):
            ix = cfg["index"]
            index = stages.build_index(out / "embeddings", out / "index", factory=ix["factory"],
                                       metric=ix["metric"], max_memory=ix["max_memory"],
                                       on_disk=ON_DISK[ix["on_disk"]],
                                       n_workers=ix["workers"] if ix["workers"] > 1 else None)
        enc = encoder.describe()
        warn = ("\n**The encoder has random weights** (`pretrained = \"none\"`): similarities, confidences and "
                "retrieval results below are not meaningful; they show that the machinery runs.\n"
                if enc.get("random_weights") else "")
        sections.append(("Catalog and embeddings", (
            f"Encoder: `{enc['model']}` / `{enc['pretrained']}` on {enc['device']} ({enc['precision']}), "
            f"embed_dim {enc['embed_dim']}.{warn}\n"
            f"Inputs: {result.counts['inputs']}, embedded: {n_videos}, skipped: {len(errors)}; "
            f"{cat['frames']} frames per clip sampled uniformly by seeking; video embedding = mean of frame "
            f"embeddings, L2-normalised.\n\nIndex: `{index.factory_string}`, metric `{index.metric}`, "
            f"{index.ntotal} vectors.\n\n### Skipped inputs\n\n" + report.markdown_table(errors))))

    inter = cfg["interactions"]
    if inter.get("path"):
        from recsys.app.config import ltr_objectives
        from recsys.app.evaluate import write_evaluation
        from recsys.app.side import read_log

        rank, ev = cfg["rank"], cfg["evaluate"]
        with _Timer(result, "rank+evaluate"):
            # the learned stage's objective heads read further feedback columns (is_like, ...)
            signals = ltr_objectives(cfg)
            df = read_log(inter["path"], format=inter["format"], sep=inter["sep"], signals=signals)
            test_df = read_log(ev["test"], format=inter["format"], sep=inter["sep"]) if ev["test"] else None
            val_df = (read_log(ev["validation"], format=inter["format"], sep=inter["sep"], signals=signals)
                      if ev["validation"] else None)
            # the `recsys evaluate` folder: TREC run files of every model, CIs, significance
            res = write_evaluation(df, rank["models"], out / "evaluation", protocol=ev["protocol"],
                                   test_ratio=ev["test_ratio"], seed=ev["seed"], k=ev["k"],
                                   metrics=ev["metrics"], params=rank["params"], source=inter["path"],
                                   test_df=test_df, test_source=ev["test"], validation_df=val_df,
                                   validation_source=ev["validation"],
                                   item_features=inter["item_features"] or None,
                                   item_text=inter["item_text"], progress=progress)
        summary_df = res["summary"]
        write_json(out / "metrics.json", {"protocol": res["protocol"], "models": summary_df.to_dict("records")})
        write_parquet(out / "per_user_metrics.parquet", res["per_user"])
        k = ev["k"]
        best = summary_df.sort_values(f"ndcg@{k}" if f"ndcg@{k}" in summary_df else summary_df.columns[1],
                                      ascending=False)["model"].iloc[0]
        from recsys.ranking.artifacts import save_trained

        with _Timer(result, "recommend"):
            for name, tm in res["trained"].items():
                save_trained(out / "models" / name, tm)
            recs = stages.recommend_users(res["trained"][best], k=rank["k"])
            recs.insert(0, "model", best)
            write_parquet(out / "recommendations.parquet", recs)
        report.plot_metrics(summary_df, out / "plots" / "metrics.png", k=k,
                            title=f"{Path(inter['path']).name}: {ev['protocol']} split, K={k}")
        proto = res["protocol"]
        sample_users = recs["user_id"].drop_duplicates().head(min(rank["n_users"], 5))
        sample = recs[recs["user_id"].isin(sample_users)].groupby("user_id", sort=False)["item_id"].apply(
            lambda s: ", ".join(map(str, s))).reset_index(name=f"top-{rank['k']} items")
        result.counts.update({"users": proto["n_users"], "items": proto["n_items"],
                              "interactions": len(df)})
        side = "".join(
            [f" Test file: `{ev['test']}`." if ev["test"] else "",
             f" Every model tuned on `{ev['validation']}` (chosen parameters in the `params` column)."
             if ev["validation"] else "",
             f" Item features: {proto['item_features']} (not usable by {proto['item_features_not_used_by']})."
             if proto.get("item_features") else ""])
        cols = ["model"] + [c for c in summary_df.columns if "@" in c and not c.endswith(("_ci_low", "_ci_high"))
                            and c.endswith(f"@{k}")] + [c for c in ("n_users", "fit_seconds", "params")
                                                          if c in summary_df]
        sections.append(("Ranking evaluation", (
            f"Log: `{inter['path']}` ({len(df)} interactions, {proto['n_users']} users, {proto['n_items']} items). "
            f"Protocol: `{proto['protocol']}` (test ratio {proto['test_ratio']}, seed {proto['seed']}); "
            f"{proto['ranking']}; users without test items excluded.{side} TREC run files of every model, "
            "confidence intervals and paired tests: `evaluation/` (its report.md).\n\n"
            + report.markdown_table(summary_df[cols]) + "\n![metrics](plots/metrics.png)\n\n"
            f"### Recommendations ({best}, first users)\n\n" + report.markdown_table(sample))))

    q = cfg["query"]
    if q["texts"]:
        if index is None:
            raise PipelineError("[query] needs a [catalog] to search; add one or remove the queries")
        with _Timer(result, "query+backfill"):
            outcomes = stages.run_queries(
                q["texts"], index, encoder, k=q["k"], backfill=q["backfill"], threshold=q["threshold"],
                out_dir=out, emb_dir=out / "embeddings", n_generate=q["n_generate"],
                generate_kwargs={"num_frames": q["num_frames"], "height": q["height"], "width": q["width"],
                                 "fps": q["fps"], "seed": q["seed"]})
            index.save(out / "index")  # synthetic clips are now part of the index
        write_json(out / "queries.json", [o.to_dict() for o in outcomes])
        flat = [{"query": o.query, "confidence": o.confidence, "backfill_triggered": o.triggered,
                 **{k2: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k2, v in r.items()}}
                for o in outcomes for r in o.results]
        write_parquet(out / "queries.parquet", pd.DataFrame(flat))
        thr = next((o.threshold for o in outcomes if o.threshold is not None), q["threshold"])
        report.plot_query_confidence(outcomes, out / "plots" / "query_confidence.png", thr,
                                     random_weights=result.random_weights)
        result.counts["synthetic_clips"] = sum(len(o.generated) for o in outcomes)
        body = [f"Backfill backend: `{q['backfill']}`; threshold: {thr}.\n\n![confidence](plots/query_confidence.png)\n"]
        for o in outcomes:
            tbl = pd.DataFrame([{"rank": r.get("rank"), "video_id": r.get("video_id"), "score": r.get("score"),
                                 "synthetic": bool(r.get("synthetic", False)),
                                 "caption": _caption(r)}
                                for r in o.results])
            body.append(f"### “{o.query}”\n\nconfidence {o.confidence:.4f}; backfill "
                        f"{'triggered: ' + ', '.join(o.generated) if o.triggered else 'not triggered'}\n\n"
                        + report.markdown_table(tbl))
        sections.append(("Text queries", "\n".join(body)))

    timing = pd.DataFrame([{"stage": s, "seconds": v} for s, v in result.seconds.items()])
    sections.append(("Timings", report.markdown_table(timing, "{:.2f}")))
    sections.append(("Settings", "```toml\n" + to_toml(cfg) + "```\n"))
    result.report = report.write_report(out / "report.md", sections, title="Pipeline run report")
