"""CLIP-style multimodal embeddings of videos, images and text, and FAISS indexes over them.

Submodules: ``video`` (decode and sample frames), ``encoders`` (open_clip image/text towers),
``store`` (embedding shards on disk), ``job`` (the batch embedding job), ``index`` (FAISS).
"""

__version__ = "0.1.0"
