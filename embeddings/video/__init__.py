"""Video and image input: decode and probe files (``decode``), choose the frames an encoder sees
(``sampling``), read a time segment (``segment``), write clips (``write``), list a job's inputs
(``catalog``) and render procedural sample clips (``samples``).

Public names are re-exported here, so ``from embeddings.video import sample_frames`` keeps working.
"""

from embeddings._lazy import reexport

__getattr__, __all__ = reexport(__name__, {
    **dict.fromkeys(["VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "VideoDecodeError", "VideoInfo",
                     "SampledFrames", "list_media", "probe_video", "sample_frames",
                     "rotate_frames"], "decode"),
    "read_segment": "segment",
    "write_video": "write",
    **dict.fromkeys(["FrameSampler", "SAMPLING_STRATEGIES", "shot_boundaries"], "sampling"),
    **dict.fromkeys(["CatalogError", "discover_inputs", "inputs_fingerprint"], "catalog"),
    **dict.fromkeys(["make_sample_catalog", "make_sample_interactions", "render_clip"], "samples"),
})
