"""FastAPI application over :class:`recsys.serve.service.Service`.

Routes are plain ``def`` functions: FastAPI runs them on its thread pool, where torch and faiss
release the GIL, so searches run concurrently (the index's reader/writer lock lets them overlap
with a backfill's adds). OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from recsys.serve.metrics import ServeMetrics
from recsys.serve.service import LimitError, Limits, Service, json_safe

log = logging.getLogger(__name__)


class StrictJSONResponse(JSONResponse):
    """JSON with NaN/inf written as null (strict RFC 8259), numpy values as Python values."""

    def render(self, content: Any) -> bytes:
        return json.dumps(json_safe(content), ensure_ascii=False, allow_nan=False, default=str,
                          separators=(",", ":")).encode("utf-8")


class SearchBody(BaseModel):
    """``POST /search``: a text or an embedding vector, and the same options as ``GET /search``."""

    text: str | None = None
    embedding: list[float] | None = None
    k: int = 10
    page: int = 0
    num_result_ids: int | None = None
    level: str = "video"
    exclude_synthetic: bool = False
    exclude_ids: list[str] = Field(default_factory=list)
    filters: dict[str, str] = Field(default_factory=dict)


class FeedbackEvent(BaseModel):
    user_id: str
    item_id: str
    rating: float = 1.0
    timestamp: int | None = None


class FeedbackBody(BaseModel):
    events: list[FeedbackEvent]


class QueryBody(BaseModel):
    """``POST /query``: confidence-gated search; ``backfill`` other than none runs as a job."""

    text: str
    k: int = 10
    backfill: str = "none"
    threshold: float | None = None
    n_generate: int = 1
    exclude_synthetic: bool = False
    user_id: str | None = None


def _parse_filters(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if ":" not in item:
            raise ValueError(f"filter: got {item!r}; expected column:value, e.g. filter=color:red")
        col, val = item.split(":", 1)
        out[col.strip()] = val
    return out


def create_app(index_dir=None, ranker_dir=None, embeddings_dir=None, *, frames_dir=None,
               feedback_log=None, device: str = "auto", token: str | None = None,
               limits: Limits | None = None, encoder=None, service: Service | None = None,
               allow_backfill: bool = True) -> FastAPI:
    """The ``recsys serve`` application; everything is loaded here, once.

    Parameters
    ----------
    index_dir : path-like
        Video index folder (``recsys index build``).
    ranker_dir : path-like, optional
        Model folder (``recsys train``) for ``/recommend`` and ``/query`` re-ranking.
    embeddings_dir : path-like, optional
        Embedding folder of the catalog (montage backfill).
    frames_dir : path-like, optional
        Frame index folder for ``level=frame`` searches.
    feedback_log : path-like, optional
        CSV ``/feedback`` appends to (default ``index_dir/../feedback.csv``).
    device : str
        Encoder and index device.
    token : str, optional
        When set, ``/feedback`` and generating ``/query`` calls need ``Authorization: Bearer
        TOKEN``. ``recsys serve`` requires one when bound to a non-loopback address.
    limits : Limits, optional
    encoder : optional
        A built encoder (tests); default the one the index records.
    service : Service, optional
        An already loaded service (then the folder arguments are ignored).
    allow_backfill : bool
        False refuses generating ``/query`` calls with 409 (several Ray Serve replicas: each one
        would add clips to its own copy of the index, and a job is known only to its replica).

    Returns
    -------
    fastapi.FastAPI
        With ``app.state.service`` and ``app.state.metrics``.
    """
    svc = service or Service(index_dir, ranker_dir=ranker_dir, embeddings_dir=embeddings_dir,
                             frames_dir=frames_dir, feedback_log=feedback_log, device=device,
                             limits=limits, encoder=encoder)
    metrics = ServeMetrics()
    svc.step_observer = metrics.observe_step
    app = FastAPI(title="recsys serve", default_response_class=StrictJSONResponse,
                  description="Text/image/clip search, recommendations, feedback and media over one "
                              "video index.")
    app.state.service, app.state.metrics = svc, metrics
    jobs: dict[str, dict] = {}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill")  # one generation at a time
    jobs_lock = threading.Lock()

    @app.middleware("http")
    async def count(request: Request, call_next):
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.observe_request(path, request.method, status, time.perf_counter() - t0)

    @app.exception_handler(LimitError)
    async def _limit(request: Request, exc: LimitError):
        return StrictJSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ValueError)
    async def _bad(request: Request, exc: ValueError):
        return StrictJSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(KeyError)
    async def _missing(request: Request, exc: KeyError):
        return StrictJSONResponse({"detail": str(exc.args[0] if exc.args else exc)}, status_code=404)

    def need_token(authorization: Annotated[str | None, Header()] = None):
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "this endpoint writes: send 'Authorization: Bearer TOKEN' with "
                                     "the token the server was started with (--token)")

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(resources.files("recsys.serve").joinpath("static/index.html")
                            .read_text(encoding="utf-8"))

    @app.get("/healthz")
    def healthz():
        """Liveness: the index and encoder are loaded."""
        return {"status": "ok", "ntotal": svc.index.ntotal}

    @app.get("/indices")
    def indices():
        """Loaded indexes, encoder and ranker."""
        return svc.indices()

    @app.get("/metrics", response_class=Response)
    def prometheus():
        """Prometheus text exposition: request counts, request and per-step latency histograms."""
        return Response(metrics.render(), media_type=metrics.content_type)

    # ----------------------------------------------------------------- search
    @app.get("/search")
    def search_get(text: Annotated[str, Query(description="text query")], k: int = 10, page: int = 0,
                   num_result_ids: int | None = None, level: str = "video",
                   exclude_synthetic: bool = False,
                   exclude_ids: Annotated[str, Query(description="comma-separated video ids")] = "",
                   filter: Annotated[list[str] | None,  # noqa: A002
                                     Query(description="column:value, repeatable")] = None,
                   confidence: bool = False):
        """Search by text; ``num_result_ids`` ids fetched, metadata for page ``page`` of ``k``."""
        seconds: dict = {}
        vec = svc.encode_text(text, seconds)
        out = svc.search(vec, k=k, page=page, num_result_ids=num_result_ids, level=level,
                         exclude_synthetic=exclude_synthetic,
                         exclude_ids=[v for v in exclude_ids.split(",") if v],
                         filters=_parse_filters(filter or []), seconds=seconds)
        conf = svc.confidence(vec, seconds) if confidence else {}
        return {"query": text, **conf, **out, "seconds": seconds}

    @app.post("/search")
    def search_post(body: SearchBody):
        """Search by text or by an embedding vector (JSON body)."""
        seconds: dict = {}
        if (body.text is None) == (body.embedding is None):
            raise ValueError("give exactly one of text or embedding")
        vec = (svc.encode_text(body.text, seconds) if body.text is not None
               else svc.check_vector(body.embedding))
        out = svc.search(vec, k=body.k, page=body.page, num_result_ids=body.num_result_ids,
                         level=body.level, exclude_synthetic=body.exclude_synthetic,
                         exclude_ids=body.exclude_ids, filters=body.filters, seconds=seconds)
        return {"query": body.text, **out, "seconds": seconds}

    @app.post("/search/upload")
    def search_upload(file: Annotated[UploadFile, File()], k: Annotated[int, Form()] = 10,
                      page: Annotated[int, Form()] = 0,
                      num_result_ids: Annotated[int | None, Form()] = None,
                      level: Annotated[str, Form()] = "video",
                      exclude_synthetic: Annotated[bool, Form()] = False):
        """Search by an uploaded image or short clip (multipart form field ``file``)."""
        data = file.file.read(svc.limits.max_upload_bytes + 1)
        seconds: dict = {}
        vec = svc.encode_upload(data, file.filename or "", seconds)
        out = svc.search(vec, k=k, page=page, num_result_ids=num_result_ids, level=level,
                         exclude_synthetic=exclude_synthetic, seconds=seconds)
        return {"query": f"upload:{file.filename}", **out, "seconds": seconds}

    @app.get("/similar")
    def similar(video_id: str, k: int = 10, exclude_synthetic: bool = False):
        """Items nearest to ``video_id`` (content similarity), the item left out."""
        seconds: dict = {}
        out = svc.similar(video_id, k=k, exclude_synthetic=exclude_synthetic, seconds=seconds)
        return {"video_id": video_id, **out, "seconds": seconds}

    @app.get("/metadata")
    def metadata(ids: Annotated[str, Query(description="comma-separated video ids")]):
        """Metadata of ``ids`` (null for unknown ones, listed in ``missing``)."""
        return svc.metadata([v for v in ids.split(",") if v])

    # -------------------------------------------------------------- recommend
    @app.get("/users")
    def users(limit: Annotated[int, Query(ge=1, le=10_000)] = 100):
        """User ids the ranker knows (first ``limit``), for the page's picker."""
        return {"users": svc.users(limit)}

    @app.get("/recommend")
    def recommend(user_id: str, k: int = 10):
        """Top-``k`` for ``user_id`` with sources; unknown users get the marked popularity fallback."""
        seconds: dict = {}
        return {**svc.recommend(user_id, k=k, seconds=seconds), "seconds": seconds}

    @app.post("/feedback", dependencies=[Depends(need_token)])
    def feedback(body: FeedbackBody):
        """Append interactions to the feedback log (CSV that ``recsys train`` reads), atomically."""
        return svc.add_feedback([e.model_dump(exclude_none=True) for e in body.events])

    # ------------------------------------------------------------------ query
    def _run_query(body: QueryBody, seconds: dict) -> dict:
        from recsys.app import stages

        t0 = time.perf_counter()
        text = svc.check_text(body.text)
        svc._check_k(body.k, None, 0)
        kwargs = {}
        if body.backfill != "none":
            kwargs = {"out_dir": svc.index_dir.parent, "emb_dir": svc.embeddings_dir,
                      "n_generate": body.n_generate}
        ranker = svc.ranker if svc.ranker is not None and hasattr(
            svc.ranker.model, "item_factors_from_embeddings") else None
        outcome = stages.run_queries([text], svc.index, svc.encoder, k=body.k, backfill=body.backfill,
                                     threshold=body.threshold, calibration=svc.calibration,
                                     exclude_synthetic=body.exclude_synthetic,
                                     ranker=ranker, user_id=body.user_id if ranker else None,
                                     **kwargs)[0]
        for step, s in outcome.seconds.items():
            metrics.observe_step(step if step in ("encode", "search") else "generate", float(s))
        if outcome.generated:
            from generation.calibration import preserve_calibration

            with preserve_calibration(svc.index_dir):
                svc.index.save(svc.index_dir)
        d = outcome.to_dict()
        for r in d["results"]:
            r.pop("path", None)
            if isinstance(r.get("provenance"), dict):
                r["provenance"].pop("path", None)
        seconds["total"] = time.perf_counter() - t0
        return d

    @app.post("/query", status_code=200)
    def query(body: QueryBody, authorization: Annotated[str | None, Header()] = None):
        """Confidence-gated search. With ``backfill`` other than ``none`` (montage, diffusers) the
        generation runs as a background job: the answer is 202 with ``status_url``."""
        if body.backfill == "none":
            return _run_query(body, {})
        need_token(authorization)
        if not allow_backfill:
            raise HTTPException(409, "generating /query calls need a single replica (each replica would "
                                     "add clips to its own copy of the index): serve backfill with "
                                     "--replicas 1")
        if body.backfill == "montage" and svc.embeddings_dir is None:
            raise ValueError("backfill='montage' cuts shots from the catalog's frame embeddings: start "
                             "the server with --embeddings EMB_DIR")
        job_id = uuid.uuid4().hex[:12]
        job = {"job_id": job_id, "status": "queued", "query": body.text, "submitted": time.time()}
        with jobs_lock:
            jobs[job_id] = job

        def work():
            job["status"] = "running"
            try:
                job["result"] = _run_query(body, {})
                job["status"] = "done"
            except Exception as e:  # noqa: BLE001 - a failed job reports its error at its URL
                log.exception("query job %s failed", job_id)
                job["status"], job["error"] = "failed", f"{type(e).__name__}: {e}"
            job["finished"] = time.time()

        pool.submit(work)
        return StrictJSONResponse({"job_id": job_id, "status": "queued",
                                   "status_url": f"/jobs/{job_id}"}, status_code=202)

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str):
        """Status of a backfill job: queued, running, done (with ``result``) or failed (``error``)."""
        job = jobs.get(job_id)
        if job is None:
            raise KeyError(f"job {job_id!r} is unknown")
        return job

    # ------------------------------------------------------------------ media
    @app.get("/media/{video_id}", response_class=FileResponse)
    def media(video_id: str):
        """The clip of ``video_id`` (HTTP range requests supported); only files the index records."""
        path = svc.media_path(video_id)
        if path is None:
            raise KeyError(f"video_id {video_id!r} has no media file registered in the index")
        return FileResponse(path)

    @app.get("/thumb/{video_id}", response_class=Response)
    def thumb(video_id: str):
        """A JPEG of the clip's middle frame."""
        data = svc.thumbnail(video_id)
        if data is None:
            raise KeyError(f"video_id {video_id!r} has no media file registered in the index")
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=3600"})

    return app
