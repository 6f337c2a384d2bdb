"""The Ray engine: the embedding job and the sharded IVF build spread over a Ray cluster.

Ray is imported only inside this package (and only when a function runs), so the rest of the
library, and a machine without Ray, never needs it. Install with the ``distributed`` extra
(``pip install -e '.[distributed]'``, which pulls ``ray[data]``).

* :func:`run_embedding_job_ray` (``recsys embed --engine ray``): Ray Data reads and preprocesses
  frames on CPU tasks, an actor pool encodes them (one GPU per actor where the cluster has GPUs),
  and the driver writes shards with the same writer as :func:`embeddings.job.run_embedding_job`.
* :func:`build_ivf_index_ray` (``recsys index build --engine ray``): train once, add shards in
  parallel Ray tasks, merge the inverted lists (in memory or on disk), save a
  :class:`embeddings.index.video_index.VideoIndex` folder.
"""

from __future__ import annotations

__all__ = ["run_embedding_job_ray", "build_ivf_index_ray", "ray_session", "RayUnavailableError"]


def __getattr__(name):  # lazy: importing the package does not import Ray
    if name == "run_embedding_job_ray":
        from embeddings.ray_engine.embed import run_embedding_job_ray

        return run_embedding_job_ray
    if name == "build_ivf_index_ray":
        from embeddings.ray_engine.index_build import build_ivf_index_ray

        return build_ivf_index_ray
    if name in ("ray_session", "RayUnavailableError"):
        from embeddings.ray_engine import cluster

        return getattr(cluster, name)
    raise AttributeError(name)
