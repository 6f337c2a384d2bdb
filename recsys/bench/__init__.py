"""Benchmarks on a user's own data behind `recsys bench`: retrieval (encoders) and index (speed/recall).

Public names are re-exported here and imported on first use (so importing the package
stays cheap: no torch or open_clip until a name that needs them is touched).
"""

from embeddings._lazy import reexport

__getattr__, __all__ = reexport(__name__, {
    **dict.fromkeys(['parse_encoder_spec', 'load_captions', 'bench_retrieval', 'METRIC_COLUMNS'], "retrieval"),
    **dict.fromkeys(['bench_index', 'expand_factories', 'machine_info'], "index"),
})
