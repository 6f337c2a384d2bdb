"""FAISS indexes addressed by string ids: the index users search (``video_index``), the pure
choice of a factory string (``factory``), the memory plan of a build (``plan``), tuning by
measurement (``tune``), sharded and on-disk builds (``shards``, ``lists``), index folders
(``io``), its lock and devices (``lock``, ``device``), frame-level retrieval (``frames``) and
speed/accuracy sweeps (``bench``).

Public names are re-exported here, so ``from embeddings.index import VideoIndex`` keeps working.
"""

from embeddings._lazy import reexport

__getattr__, __all__ = reexport(__name__, {
    **dict.fromkeys(["VideoIndex", "SearchResult"], "video_index"),
    **dict.fromkeys(["choose_factory", "parse_size", "estimate_memory_bytes",
                     "validate_embeddings"], "factory"),
    **dict.fromkeys(["BuildPlan", "plan_build"], "plan"),
    **dict.fromkeys(["build_tuned", "tune_search_params"], "tune"),
    **dict.fromkeys(["build_sharded", "build_from_embedding_folder"], "shards"),
    **dict.fromkeys(["FORMAT_VERSION", "IndexFileError", "save_index", "load_index"], "io"),
    **dict.fromkeys(["FrameIndex", "FrameSearchResult", "build_video_and_frame_indexes"], "frames"),
})
