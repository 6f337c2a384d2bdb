"""Start clip-retrieval's back end (``clip back``) on one index folder: bench_serve.py's peer.

Runs under the peer's own Python (a separate venv: clip-retrieval pins numpy<2, pandas, pyarrow and
open_clip versions that would break this project's); imports nothing from this project.

    PEER_PYTHON _clip_back_peer.py INDICE_FOLDER PORT [--clip-model open_clip:ViT-B-32]
                                   [--random-weights ViT-B-32]

``INDICE_FOLDER`` is clip back's layout: ``image.index`` (faiss) and ``metadata/*.parquet``.
clip back's Flask server binds 0.0.0.0 unconditionally; here ``Flask.run`` is made to bind
127.0.0.1 (the benchmark is loopback only). With ``--random-weights ARCH`` clip back's model loader
is replaced by open_clip ``ARCH`` with seeded random weights (``pretrained=None``), which is what
bench_serve.py's own server uses: the towers cost the same; no weights are downloaded. Everything
else (request parsing, text tokenizer, faiss search_and_reconstruct, metadata, Flask) is clip
back's own code.
"""

import argparse
import json
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("indice_folder")
    ap.add_argument("port", type=int)
    ap.add_argument("--clip-model", default="open_clip:ViT-B-32")
    ap.add_argument("--random-weights", metavar="ARCH", default=None)
    args = ap.parse_args()

    import flask

    flask_run = flask.Flask.run

    def run_on_loopback(self, host=None, port=None, **kwargs):
        return flask_run(self, host="127.0.0.1", port=port, **kwargs)

    flask.Flask.run = run_on_loopback
    if args.random_weights:
        # clip back (2.45) calls all_clip.load_clip(name, use_jit=, device=) at start-up and uses
        # the (model, preprocess, tokenizer) it returns; all_clip's open_clip loader with
        # pretrained=None instead of a downloaded checkpoint, and seeded weights
        import all_clip
        import open_clip
        import torch
        from all_clip.open_clip import OpenClipWrapper

        def load_random(clip_model, use_jit=True, device="cpu", **kwargs):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                args.random_weights, pretrained=None, device=device)
            model = OpenClipWrapper(inner_model=model.eval(), device=device)
            return model, preprocess, open_clip.get_tokenizer(args.random_weights)

        all_clip.load_clip = load_random  # clip back imports it from all_clip at call time
    from clip_retrieval.clip_back import clip_back

    paths = os.path.join(args.indice_folder, "indices_paths.json")
    with open(paths, "w", encoding="utf-8") as f:
        json.dump({"bench": args.indice_folder}, f)
    clip_back(indices_paths=paths, port=args.port, clip_model=args.clip_model,
              enable_mclip_option=False, provide_aesthetic_embeddings=False, use_jit=False,
              columns_to_return=["video_id", "caption"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
