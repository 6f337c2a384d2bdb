"""Image and text encoders: open_clip models that return L2-normalised float32 numpy embeddings
(``open_clip``), their Hugging Face text towers (``text_towers``), the image preprocessing run in
reader workers (``preprocess``) and the batch size that fits memory (``batch_size``).

Public names are re-exported here, so ``from embeddings.encoders import load_encoder`` keeps working.
"""

from embeddings._lazy import reexport

__getattr__, __all__ = reexport(__name__, {
    **dict.fromkeys(["TINY_MODEL", "PRECISIONS", "CHECKPOINT_SUFFIXES",
                     "PretrainedWeightsUnavailable", "ClipEncoder", "load_encoder",
                     "pool_frames"], "open_clip"),
    "FrameTransform": "preprocess",
    "choose_batch_size": "batch_size",
})
