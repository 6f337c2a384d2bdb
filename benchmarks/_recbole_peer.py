"""RecBole's SASRec / GRU4Rec as a peer on exactly our leave-one-out split (benchmark helper).

Not library code: the numpy-2 compatibility shims below are applied only when this helper
runs RecBole, inside the benchmark process.

How the split reaches RecBole: its ``benchmark_filename`` mechanism (pre-split atomic files
``<name>.train.inter``, ``<name>.valid.inter``, ``<name>.test.inter``, each row
``user_id:token  item_id_list:token_seq  item_id:token`` = the last ``max_length`` items before a
target, and the target). RecBole then does no splitting, ordering or augmentation of its own
(``SequentialDataset._benchmark_presets``, ``Dataset.build``).

* train: every next-item target of every user's training history (the prefix before it);
* valid: the same inner-validation users as our neural models (``validation_users`` users with
  >= 3 training items, drawn with ``numpy.random.default_rng(seed)``): their last training item,
  held out of train, as in ``recsys.models.sequential._NeuralSequential._fit_sequences``;
* test: (whole training history -> reported target). RecBole never evaluates it: the bench
  scores the final model on our histories with ``full_sort_predict`` and computes HR/NDCG with
  its own metric code (seen items removed, ties counted against the model), so the protocol is
  identical to our models'. RecBole's own sequential full-sort evaluation would not remove the
  history items and breaks ties by sort order.

Training: RecBole's ``Trainer._train_epoch`` / ``_valid_epoch`` (its loss, optimiser, data
loader, full-ranking validation NDCG@10); the loop around them is ours so that a wall-clock
budget can stop it between batches, and the best-validation weights are kept in memory (no
RecBole checkpoint is re-read, so ``torch.load`` is never needed).
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from pathlib import Path

import numpy as np

# The shims, with the exact error each one answers (recbole 1.2.1, numpy 2.x, torch 2.x).
SHIMS = [
    {"shim": "np.float_ = np.float64; np.complex_ = np.complex128; np.unicode_ = np.str_",
     "why": "AttributeError: `np.float_` was removed in the NumPy 2.0 release. Use `np.float64` "
            "instead. (recbole/config/configurator.py:630 Config.compatibility_settings runs "
            "np.float = np.float_ and, on the next lines, np.complex = np.complex_, "
            "np.unicode = np.unicode_; these restore RecBole's own np.float/np.int/np.bool "
            "aliases used in recbole/evaluator/metrics.py:90, recbole/data/interaction.py:31, "
            "recbole/data/dataset/dataset.py:652)"},
    {"shim": "pandas.Series.agg(len) -> Series.map(len), only while RecBole builds its dataset",
     "why": "ValueError: Length of values (1) does not match length of index (N) "
            "(recbole/data/dataset/dataset.py:1217-1218 Dataset._remap: split_point = "
            "np.cumsum(feat[field].agg(len))[:-1]; pandas 3 reduces Series.agg(len) to len(series) "
            "instead of one length per token sequence, so item_id_list is not split back per row; "
            "same idiom at recbole/data/dataset/sequential_dataset.py:165 for item_length)"},
]
NOT_NEEDED = [
    "torch.load(weights_only=False): RecBole's trainer re-reads its own checkpoint with "
    "torch.load (recbole/trainer/trainer.py:323, :583), which torch >= 2.6 refuses for its "
    "pickled config; our loop keeps the best weights in memory and never reads a checkpoint",
]


def recbole_version() -> str | None:
    """RecBole's version when it imports (after the shims), else None."""
    try:
        apply_shims()
        import recbole
        from recbole.quick_start import run_recbole  # noqa: F401  (the whole import chain)
    except ImportError:
        return None
    return recbole.__version__


def apply_shims() -> list[dict]:
    """Restore the NumPy 1.x aliases RecBole 1.2.1 reads at import/config time."""
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    if not hasattr(np, "complex_"):
        np.complex_ = np.complex128
    if not hasattr(np, "unicode_"):
        np.unicode_ = np.str_
    return SHIMS


def inner_validation_users(histories, n_val: int, seed: int) -> np.ndarray:
    """The users our neural models hold out for early stopping (same draw, same order)."""
    rng = np.random.default_rng(int(seed))
    eligible = np.flatnonzero([h.size >= 3 for h in histories])
    n_val = min(int(n_val), eligible.size)
    return np.sort(rng.choice(eligible, size=n_val, replace=False)) if n_val else eligible[:0]


def write_split(workdir: Path, name: str, histories, targets, val_users, max_length: int
                ) -> dict:
    """Write ``name.{train,valid,test}.inter`` under ``workdir/name``; returns row counts."""
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    is_val = np.zeros(len(histories), bool)
    is_val[np.asarray(val_users, dtype=np.int64)] = True
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    counts = {}

    def row(u, prefix, target):
        return f"{u}\t{' '.join(map(str, prefix[-max_length:]))}\t{target}\n"

    parts = {"train": [], "valid": [], "test": []}
    for u, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)
        train = h[:-1] if is_val[u] else h
        for t in range(1, train.size):
            parts["train"].append(row(u, train[:t], train[t]))
        if is_val[u]:
            parts["valid"].append(row(u, h[:-1], h[-1]))
        if h.size:
            parts["test"].append(row(u, h, int(targets[u])))
    for part, rows in parts.items():
        path = d / f"{name}.{part}.inter"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(head)
            fh.writelines(rows)
        tmp.replace(path)
        counts[part] = len(rows)
    return counts


@contextlib.contextmanager
def pandas_agg_len_shim():
    """Within the block, ``Series.agg(len)`` is elementwise again (pandas < 3 behaviour)."""
    import pandas as pd

    original = pd.Series.agg

    def agg(self, func=None, axis=0, *args, **kwargs):
        if func is len:
            return self.map(len)
        return original(self, func, axis, *args, **kwargs)

    pd.Series.agg = agg
    try:
        yield
    finally:
        pd.Series.agg = original


@contextlib.contextmanager
def _cwd(path: Path):
    """RecBole writes log/ and log_tensorboard/ into the working directory, and its Config
    parses ``--key=value`` from ``sys.argv``: run it in ``path`` with the bench's arguments hidden
    and its pandas-3 / torch-2 deprecation warnings silenced."""
    import sys
    import warnings

    old, argv = os.getcwd(), sys.argv
    os.chdir(path)
    sys.argv = argv[:1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.chdir(old)
        sys.argv = argv


class RecBolePeer:
    """Train one RecBole sequential model on our split; score our histories with it.

    Parameters
    ----------
    model : {"SASRec", "GRU4Rec"}
    histories : list of int arrays
        Training history of every user (our item indices, oldest first).
    targets : int array, shape (n_users,)
        The reported next item per user (written to the test file only; never trained on).
    n_items : int
    workdir : Path
        Temporary folder (atomic files, RecBole's log folders).
    epochs, time_budget_s : int, float
        At most ``epochs`` epochs and ``time_budget_s`` seconds of training, counted in process
        CPU time (``time.process_time``: on a shared machine wall-clock time depends on the other
        processes) and checked between batches, so the last epoch may be partial.
    """

    def __init__(self, model: str, histories, targets, n_items: int, workdir: Path, *,
                 max_length: int = 50, embed_dim: int = 64, num_layers: int = 2,
                 num_heads: int = 2, dropout: float = 0.2, learning_rate: float = 1e-3,
                 batch_size: int = 1024, epochs: int = 5, time_budget_s: float = 600.0,
                 patience: int = 2, validation_users: int = 2000, seed: int = 0):
        self.model_name = model
        self.histories = histories
        self.targets = targets
        self.n_items = int(n_items)
        self.workdir = Path(workdir)
        self.max_length = int(max_length)
        self.epochs = int(epochs)
        self.time_budget_s = float(time_budget_s)
        self.patience = int(patience)
        self.seed = int(seed)
        self.val_users = inner_validation_users(histories, validation_users, seed)
        self.config_dict = {
            "data_path": str(self.workdir), "benchmark_filename": ["train", "valid", "test"],
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
            "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
            "alias_of_item_id": ["item_id_list"], "MAX_ITEM_LIST_LENGTH": self.max_length,
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                          "group_by": "user"},
            "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
            "loss_type": "CE", "train_neg_sample_args": None, "epochs": self.epochs,
            "train_batch_size": int(batch_size), "eval_batch_size": 2048,
            "learning_rate": float(learning_rate), "stopping_step": self.patience,
            "device": "cpu", "use_gpu": False, "seed": self.seed, "reproducibility": True,
            "show_progress": False, "checkpoint_dir": str(self.workdir / "saved"),
            "log_wandb": False, "worker": 0,
            "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
        }
        if model == "SASRec":
            self.config_dict.update(
                hidden_size=embed_dim, inner_size=embed_dim, n_layers=num_layers,
                n_heads=num_heads, hidden_dropout_prob=dropout, attn_dropout_prob=dropout)
        elif model == "GRU4Rec":
            self.config_dict.update(embedding_size=embed_dim, hidden_size=embed_dim,
                                    num_layers=1, dropout_prob=dropout)
        else:
            raise ValueError(f"model must be 'SASRec' or 'GRU4Rec', got {model!r}")

    def fit(self) -> dict:
        """Write the split, build RecBole's dataset/model/trainer and train; returns info."""
        apply_shims()
        import torch
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import get_model, get_trainer, init_seed

        name = "seqsplit"
        t0 = time.perf_counter()
        rows = write_split(self.workdir, name, self.histories, self.targets, self.val_users,
                           self.max_length)
        with _cwd(self.workdir):
            config = Config(model=self.model_name, dataset=name, config_dict=self.config_dict)
            init_seed(config["seed"], config["reproducibility"])
            with pandas_agg_len_shim():
                dataset = create_dataset(config)
                train_data, valid_data, _test = data_preparation(config, dataset)
            init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
            model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
            trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
            setup_s = time.perf_counter() - t0
            deadline = time.process_time() + self.time_budget_s
            history, best, best_state, bad = [], -1.0, None, 0
            t_train, c_train = time.perf_counter(), time.process_time()
            for epoch in range(self.epochs):
                e0 = time.perf_counter()
                loss = trainer._train_epoch(_Deadline(train_data, deadline), epoch)
                val, _ = trainer._valid_epoch(valid_data)
                partial = time.process_time() >= deadline
                history.append({"epoch": epoch + 1, "loss": float(loss), "val_ndcg@10": float(val),
                                "seconds": time.perf_counter() - e0, "partial": partial})
                if val > best:
                    best, bad = float(val), 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
                if partial or bad > self.patience:
                    break
            train_s = time.perf_counter() - t_train
            train_cpu = time.process_time() - c_train
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        self._model, self._dataset, self._torch = model, dataset, torch
        tokens = [str(i) for i in range(self.n_items)]
        known = dataset.field2token_id["item_id"]
        self._cols = np.array([known.get(t, -1) for t in tokens], dtype=np.int64)
        self.info = {
            "recbole_model": self.model_name, "rows": rows, "setup_seconds": setup_s,
            "train_seconds": train_s, "train_cpu_seconds": train_cpu, "epochs_run": len(history), "epoch_cap": self.epochs,
            "time_budget_s": self.time_budget_s, "training_history": history,
            "best_validation_ndcg@10 (RecBole's own, inner validation users)": best,
            "config": {k: v for k, v in self.config_dict.items()
                       if k not in ("data_path", "checkpoint_dir")},
        }
        return self.info

    def score_sequences(self, histories, batch: int = 2048) -> np.ndarray:
        """Scores (n, n_items) over our item indices from RecBole's ``full_sort_predict``.

        Items RecBole never saw get ``-inf``.
        """
        from recbole.data.interaction import Interaction

        torch = self._torch
        out = np.full((len(histories), self.n_items), -np.inf, np.float32)
        known = self._cols >= 0
        ml = self.max_length
        for s in range(0, len(histories), batch):
            hs = [np.asarray(h[-ml:], dtype=np.int64) for h in histories[s:s + batch]]
            seq = np.zeros((len(hs), ml), np.int64)  # RecBole pads on the right
            for i, h in enumerate(hs):
                seq[i, :h.size] = np.maximum(self._cols[h], 0)
            inter = Interaction({"item_id_list": torch.from_numpy(seq),
                                 "item_length": torch.tensor([h.size for h in hs])})
            with torch.no_grad():
                sc = self._model.full_sort_predict(inter).numpy()
            out[s:s + len(hs)][:, known] = sc[:, self._cols[known]]
        return out


class _Deadline:
    """A data loader that stops yielding batches once ``deadline`` (process_time) passes."""

    def __init__(self, loader, deadline: float):
        self._loader = loader
        self._deadline = deadline

    def __len__(self):
        return len(self._loader)

    def __iter__(self):
        for batch in self._loader:
            if time.process_time() >= self._deadline:
                return
            yield batch

    def __getattr__(self, name):
        return getattr(self._loader, name)
