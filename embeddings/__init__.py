"""CLIP-style multimodal embeddings of videos, images and text, and FAISS indexes over them.

Subpackages: ``video`` (decode, sample and write frames; a job's catalog), ``encoders``
(open_clip image/text towers), ``index`` (FAISS: choose, plan, build, tune, save), ``ray_engine``
(the job and index builds on Ray). Modules: ``store`` (embedding shards on disk), ``job`` (the
batch embedding job), ``retrieval_eval`` (text-to-video retrieval metrics).
"""

__version__ = "0.1.0"
