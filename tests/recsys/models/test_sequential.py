"""Sequential recommenders: tiny cyclic sequences whose next item is obvious."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.models import MODELS, Recommender, fit_model, make_model
from recsys.models.sequential import (
    GRU4Rec,
    LastItemKNN,
    SASRec,
    WindowKNN,
    histories_from_times,
    read_sequence_file,
    sequences_to_user_items,
)

N_ITEMS = 8

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: threads only add overhead, and 2 shared cores oversubscribe


def cycles(n_users=120, seed=0):
    """Every user walks the cycle 0->1->...->7->0 from a random start: next item = last + 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_users):
        start, length = rng.integers(0, N_ITEMS), rng.integers(3, 7)
        out.append([(start + i) % N_ITEMS for i in range(length)])
    return out


TINY = dict(embed_dim=16, epochs=40, patience=40, validation_users=10, learning_rate=1e-2,
            batch_size=64, progress=False, dropout=0.0)


@pytest.fixture(scope="module")
def data():
    ui, times = sequences_to_user_items(cycles(), N_ITEMS)
    return ui, times


@pytest.fixture(scope="module")
def fitted(data):
    ui, times = data
    return {
        "sasrec": SASRec(num_heads=1, **TINY).fit(ui, interaction_times=times),
        "gru4rec": GRU4Rec(**TINY).fit(ui, interaction_times=times),
        "lastitem": LastItemKNN().fit(ui, interaction_times=times),
        "windowknn": WindowKNN(window=2, recency=0.5).fit(ui, interaction_times=times),
    }


def test_registry_names():
    assert MODELS["sasrec"] is SASRec and MODELS["gru4rec"] is GRU4Rec
    assert MODELS["lastitem"] is LastItemKNN and MODELS["windowknn"] is WindowKNN


def test_histories_follow_times_not_item_index():
    ui, times = sequences_to_user_items([[5, 2, 7], [1]], 8)
    hist = histories_from_times(times)
    assert hist[0].tolist() == [5, 2, 7] and hist[1].tolist() == [1]
    # a repeated item counts once, at its latest position
    _, times = sequences_to_user_items([[3, 4, 3]], 8)
    assert histories_from_times(times)[0].tolist() == [4, 3]


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_neural_models_learn_the_cycle(fitted, name):
    model = fitted[name]
    ids, _ = model.recommend_sequences([[2, 3, 4], [6, 7], [7, 0, 1]], k=1)
    assert ids[:, 0].tolist() == [5, 0, 2]
    assert model.training_history_[-1]["val_ndcg@10"] > 0.9


def test_recommend_uses_stored_history_order(fitted, data):
    ui, _ = data
    model = fitted["sasrec"]
    hist = [model.history(u) for u in range(3)]
    ids, _ = model.recommend(np.arange(3), ui[:3], k=1)
    assert ids[:, 0].tolist() == [int((h[-1] + 1) % N_ITEMS) for h in hist]


def test_partial_fit_folds_in_grown_history(fitted):
    model = GRU4Rec.__new__(GRU4Rec)  # a shallow copy; partial_fit replaces, never mutates, arrays
    model.__dict__.update(fitted["gru4rec"].__dict__)
    last = int(model.history(0)[-1])
    nxt = (last + 1) % N_ITEMS
    model.partial_fit(0, [nxt])
    assert model.history(0)[-1] == nxt
    import scipy.sparse as sp

    row = sp.csr_matrix((np.ones(1), ([0], [0])), shape=(1, N_ITEMS))
    ids, _ = model.recommend(0, row, k=1, filter_already_liked_items=False)
    assert ids[0] == (nxt + 1) % N_ITEMS
    with pytest.raises(ValueError, match="unseen in training"):
        model.partial_fit(0, [N_ITEMS + 3])


def test_lastitem_knn_scores_neighbours_of_last_item(fitted):
    ids, scores = fitted["lastitem"].recommend_sequences([[0, 1, 2]], k=2)
    assert ids[0, 0] == 3  # 2's most co-watched neighbours are 1 (seen, filtered) and 3
    assert np.all(np.diff(scores[0]) <= 0)


def _window_sim(sequences, n_items, **params):
    ui, times = sequences_to_user_items(sequences, n_items)
    model = WindowKNN(**params).fit(ui, interaction_times=times)
    return model, model._sim().toarray()


def test_windowknn_counts_pairs_within_the_window_both_ways():
    # two histories 0,1,2 and 0,1,3: at distance 1 the pairs 0-1 (twice), 1-2, 1-3
    _, sim = _window_sim([[0, 1, 2], [0, 1, 3]], 5, window=1, alpha=0.0)
    expected = np.zeros((5, 5))
    for a, b, c in ((0, 1, 2.0), (1, 2, 1.0), (1, 3, 1.0)):
        expected[a, b] = expected[b, a] = c
    np.testing.assert_allclose(sim, expected)
    # window 2 adds the distance-2 pairs 0-2 and 0-3 at weight decay = 0.5
    _, sim = _window_sim([[0, 1, 2], [0, 1, 3]], 5, window=2, decay=0.5, alpha=0.0)
    assert sim[0, 2] == sim[2, 0] == sim[0, 3] == 0.5 and sim[0, 1] == 2.0
    # alpha 0.5 divides by sqrt(n_i n_j): items 0 and 1 are in 2 histories each -> 2 / 2
    _, sim = _window_sim([[0, 1, 2], [0, 1, 3]], 5, window=1, alpha=0.5)
    assert sim[0, 1] == pytest.approx(1.0) and sim[1, 2] == pytest.approx(1 / np.sqrt(2))


def test_windowknn_tells_items_watched_together_from_items_watched_apart():
    # every history is 0,1,2,3: all four items co-occur in every history (whole-history kNN
    # cannot rank 1 above 3 for a user who watched 0), but only 1 is watched next to 0
    seqs = [[0, 1, 2, 3]] * 10
    model, _ = _window_sim(seqs, 4, window=1)
    ids, scores = model.recommend_sequences([[0]], k=3)
    assert ids[0, 0] == 1 and scores[0, 0] > 0 and np.all(scores[0, 1:] <= 0)
    cosine = LastItemKNN().fit(*sequences_to_user_items(seqs, 4))
    s = cosine.recommend_sequences([[0]], k=3)[1][0]
    assert s[0] == pytest.approx(s[2])  # the whole-history co-occurrence ties 1, 2 and 3


def test_windowknn_recency_leans_on_the_latest_items():
    seqs = [[0, 1]] * 5 + [[2, 3]] * 5
    flat, _ = _window_sim(seqs, 4, window=1, recency=1.0)
    recent, _ = _window_sim(seqs, 4, window=1, recency=0.5)
    s = flat.recommend_sequences([[0, 2]], k=2)[1][0]
    assert s[0] == pytest.approx(s[1])  # 1 (next to the older item 0) ties 3 (next to 2)
    ids, s = recent.recommend_sequences([[0, 2]], k=2)
    assert ids[0].tolist() == [3, 1] and s[0, 1] == pytest.approx(0.5 * s[0, 0])


def test_windowknn_prunes_neighbours_and_checks_parameters(data):
    ui, times = data
    model = WindowKNN(window=3, neighbors=2).fit(ui, interaction_times=times)
    assert np.all(np.diff(model.sim_indptr_) <= 2)
    assert np.all(model._sim().diagonal() == 0)
    for bad, match in (({"window": 0}, "window"), ({"decay": 0.0}, "decay"), ({"alpha": 2.0}, "alpha"),
                       ({"recency": 1.5}, "recency"), ({"neighbors": 0}, "neighbors")):
        with pytest.raises(ValueError, match=match):
            WindowKNN(**bad).fit(ui, interaction_times=times)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "lastitem", "windowknn"])
def test_save_load_round_trip(fitted, name, tmp_path):
    model = fitted[name]
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = Recommender.load(path)
    assert type(loaded) is type(model)
    h = [[1, 2, 3], [5]]
    np.testing.assert_allclose(loaded.recommend_sequences(h, k=3)[1],
                               model.recommend_sequences(h, k=3)[1], rtol=1e-5)
    np.testing.assert_array_equal(loaded.history(4), model.history(4))


def test_deterministic_on_cpu(data):
    ui, times = data
    params = dict(TINY, epochs=3)
    a = GRU4Rec(**params).fit(ui, interaction_times=times)
    b = GRU4Rec(**params).fit(ui, interaction_times=times)
    h = [[0, 1], [4, 5, 6]]
    np.testing.assert_array_equal(a.recommend_sequences(h, k=8)[1], b.recommend_sequences(h, k=8)[1])


def test_checkpoint_resume_matches_uninterrupted_run(data, tmp_path):
    ui, times = data
    params = dict(TINY, epochs=4, patience=10)
    full = GRU4Rec(**params).fit(ui, interaction_times=times)
    # "killed" after 2 epochs: a run with epochs=2 leaves its checkpoint; resume to 4
    GRU4Rec(**dict(params, epochs=2), checkpoint_dir=str(tmp_path)).fit(ui, interaction_times=times)
    resumed = GRU4Rec(**params, checkpoint_dir=str(tmp_path)).fit(ui, interaction_times=times)
    assert [h["epoch"] for h in resumed.training_history_] == [1, 2, 3, 4]
    h = [[0, 1], [4, 5, 6]]
    np.testing.assert_allclose(resumed.recommend_sequences(h, k=8)[1],
                               full.recommend_sequences(h, k=8)[1], rtol=1e-5)
    with pytest.raises(ValueError, match="different model configuration"):
        GRU4Rec(**dict(params, embed_dim=8), checkpoint_dir=str(tmp_path)).fit(ui, interaction_times=times)


def test_resume_same_config(data, tmp_path):
    ui, times = data
    params = dict(TINY, epochs=3, patience=10, checkpoint_dir=str(tmp_path))
    first = GRU4Rec(**params).fit(ui, interaction_times=times)
    assert (tmp_path / "checkpoint.pt").exists()
    again = GRU4Rec(**params).fit(ui, interaction_times=times)  # all epochs done: nothing to train
    assert len(again.training_history_) == 3
    h = [[0, 1, 2]]
    np.testing.assert_allclose(again.recommend_sequences(h, k=8)[1],
                               first.recommend_sequences(h, k=8)[1], rtol=1e-6)


def test_corrupt_checkpoint_is_a_clear_error(data, tmp_path):
    ui, times = data
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        GRU4Rec(**dict(TINY, epochs=1), checkpoint_dir=str(tmp_path)).fit(ui, interaction_times=times)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # nothing lost


def test_bad_inputs(data, fitted):
    ui, times = data
    with pytest.raises(ValueError, match="interaction_times"):
        fit_model(LastItemKNN(), ui)
    short_ui, short_t = sequences_to_user_items([[1], [2], [3]], N_ITEMS)
    with pytest.raises(ValueError, match="at least 2 items"):
        LastItemKNN().fit(short_ui, interaction_times=short_t)
    with pytest.raises(ValueError, match="empty history"):
        fitted["lastitem"].recommend_sequences([[]], k=2)
    with pytest.raises(ValueError, match="unseen in training"):
        fitted["sasrec"].recommend_sequences([[1, N_ITEMS]], k=2)
    with pytest.raises(ValueError, match="loss"):
        make_model("sasrec", loss="hinge").fit(ui, interaction_times=times)
    with pytest.raises(ValueError, match="max_length"):
        make_model("gru4rec", max_length=0).fit(ui, interaction_times=times)


def test_cuda_never_silently_falls_back(data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    ui, times = data
    with pytest.raises(ValueError, match="no CUDA GPU"):
        GRU4Rec(device="cuda").fit(ui, interaction_times=times)


def test_max_length_truncates(fitted):
    model = fitted["sasrec"]
    long = list(range(N_ITEMS)) * 20 + [0, 1, 2]  # only the last max_length items are used
    short = (long[-model.max_length:])
    np.testing.assert_allclose(model.recommend_sequences([long], k=3, filter_already_liked_items=False)[1],
                               model.recommend_sequences([short], k=3, filter_already_liked_items=False)[1],
                               rtol=1e-5)


def test_read_sequence_file(tmp_path):
    p = tmp_path / "s.tsv"
    p.write_text("u1\t10 20 30\nu2\t20 40\n")
    df = read_sequence_file(p)
    assert df["item_id"].tolist() == ["10", "20", "30", "20", "40"]
    assert df["timestamp"].tolist() == [1, 2, 3, 1, 2]
    (tmp_path / "bad.tsv").write_text("u1 10 20\n")
    with pytest.raises(ValueError, match="bad.tsv:1"):
        read_sequence_file(tmp_path / "bad.tsv")


def test_cli_train_and_recommend_on_a_sequence_file(tmp_path, capsys):
    from recsys.cli import main

    lines = [f"u{u}\t" + " ".join(f"i{x}" for x in seq) for u, seq in enumerate(cycles(60, seed=1))]
    p = tmp_path / "pairs.tsv"
    p.write_text("\n".join(lines) + "\n")
    assert main(["train", str(p), "--model", "lastitem", "--out", str(tmp_path / "m")]) == 0
    out = tmp_path / "recs.tsv"
    assert main(["recommend", str(tmp_path / "m"), "--all-users", "-k", "1", "--out", str(out)]) == 0
    import pandas as pd

    recs = pd.read_csv(out, sep="\t", dtype=str).set_index("user_id")["item_id"]
    for u, seq in enumerate(cycles(60, seed=1)):  # next item of the cycle after the last one
        assert recs[f"u{u}"] == f"i{(seq[-1] + 1) % N_ITEMS}"


# ---------------------------------------------------------------- item content (cold items)
N_CYCLE, COLD, TWIN = 16, 16, 5  # items 0..15 form the cycle; 16 never occurs, its content = 5's


def content_data():
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(200):
        start, length = rng.integers(0, N_CYCLE), rng.integers(3, 8)
        seqs.append([(start + i) % N_CYCLE for i in range(length)])
    ui, times = sequences_to_user_items(seqs, N_CYCLE + 1)
    feats = np.random.default_rng(1).normal(size=(N_CYCLE + 1, 16))
    feats[COLD] = feats[TWIN]  # the cold item looks like the item that follows 4
    return ui, times, feats


@pytest.fixture(scope="module")
def content_fitted():
    ui, times, feats = content_data()
    out = {}
    for name, cls, kw in [("sasrec", SASRec, {"num_heads": 1}), ("gru4rec", GRU4Rec, {})]:
        out[name, True] = cls(**kw, **TINY).fit(ui, interaction_times=times, item_features=feats)
        out[name, False] = cls(**kw, **TINY).fit(ui, interaction_times=times)
    return out


def _rank_of(model, history, item):
    ids, _ = model.recommend_sequences([history], k=N_CYCLE + 1 - len(history))
    return int(np.flatnonzero(ids[0] == item)[0])


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_cold_item_is_scored_through_its_features(content_fitted, name):
    with_f, without = content_fitted[name, True], content_fitted[name, False]
    for history in ([2, 3, 4], [0, 1, 2, 3, 4]):
        assert with_f.recommend_sequences([history], k=1)[0][0, 0] == TWIN  # the warm answer
        # 14 candidates: the cold twin of the right answer is near the top with its features ...
        assert _rank_of(with_f, history, COLD) <= 2
        # ... and not without them (an untrained id embedding, pushed down as a negative)
        assert _rank_of(without, history, COLD) >= 4
    # elsewhere in the cycle the cold item is no answer
    assert _rank_of(with_f, [9, 10, 11], COLD) >= 4


def test_no_features_is_the_plain_id_model(data):
    ui, times = data
    params = dict(TINY, epochs=3, num_heads=1)
    plain = SASRec(**params).fit(ui, interaction_times=times)
    none = fit_model(SASRec(**params, id_dropout=0.0), ui, interaction_times=times, item_features=None)
    h = [[0, 1], [4, 5, 6]]
    np.testing.assert_array_equal(plain.recommend_sequences(h, k=8)[0], none.recommend_sequences(h, k=8)[0])
    np.testing.assert_array_equal(plain.recommend_sequences(h, k=8)[1], none.recommend_sequences(h, k=8)[1])
    assert not any(k.startswith(("net.feat", "net.proj")) for k in plain._get_state())


def test_content_model_save_load_and_determinism(content_fitted, tmp_path):
    ui, times, feats = content_data()
    model = content_fitted["sasrec", True]
    model.save(tmp_path / "m.npz")
    loaded = Recommender.load(tmp_path / "m.npz")
    h = [[2, 3, 4], [COLD], [7, COLD]]  # the cold item also works as input
    for a, b in zip(loaded.recommend_sequences(h, k=5), model.recommend_sequences(h, k=5), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    again = SASRec(num_heads=1, **TINY).fit(ui, interaction_times=times, item_features=[feats])
    np.testing.assert_array_equal(again.recommend_sequences(h, k=5)[1], model.recommend_sequences(h, k=5)[1])


def test_bad_item_features(data):
    ui, times = data
    with pytest.raises(ValueError, match=r"item_features\[0\] has shape \(7, 4\)"):
        SASRec(**TINY).fit(ui, interaction_times=times, item_features=np.ones((N_ITEMS - 1, 4)))
    nan = np.ones((N_ITEMS, 4))
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3 holds NaN"):
        GRU4Rec(**TINY).fit(ui, interaction_times=times, item_features=nan)
    with pytest.raises(ValueError, match="LastItemKNN cannot use item_features"):
        LastItemKNN().fit(ui, interaction_times=times, item_features=np.ones((N_ITEMS, 4)))
    with pytest.raises(ValueError, match="id_dropout"):
        SASRec(id_dropout=1.0).fit(ui, interaction_times=times)


def test_cli_train_sasrec_with_item_features(tmp_path):
    from recsys.cli import main

    lines = [f"u{u}\t" + " ".join(str(x) for x in seq) for u, seq in enumerate(cycles(60, seed=1))]
    p = tmp_path / "seqs.tsv"
    p.write_text("\n".join(lines) + "\n")
    np.save(tmp_path / "f.npy", np.random.default_rng(0).normal(size=(N_ITEMS, 4)))
    assert main(["train", str(p), "--model", "sasrec", "--item-features", str(tmp_path / "f.npy"),
                 "--param", "epochs=2", "--param", "embed_dim=8", "--param", "num_heads=1",
                 "--param", "validation_users=0", "--out", str(tmp_path / "m")]) == 0
    from recsys.ranking.artifacts import load_trained

    model = load_trained(tmp_path / "m").model
    assert model.n_items_ == N_ITEMS and model._item_features.shape == (N_ITEMS, 4)


def test_checkpoint_of_other_item_features_is_not_resumed(data, tmp_path):
    ui, times = data
    params = dict(TINY, epochs=1, checkpoint_dir=str(tmp_path))
    feats = np.random.default_rng(0).normal(size=(N_ITEMS, 4))
    GRU4Rec(**params).fit(ui, interaction_times=times, item_features=feats)
    with pytest.raises(ValueError, match="different model configuration"):
        GRU4Rec(**params).fit(ui, interaction_times=times, item_features=feats[::-1])


def test_windows_cover_every_transition_once():
    from recsys.models.sequential import _windows

    seq = np.arange(1, 12)
    chunks = _windows(seq, 4, "all")
    assert all(c.size <= 5 for c in chunks)
    targets = sorted(int(t) for c in chunks for t in c[1:])
    assert targets == list(range(2, 12))  # every transition (input -> next) is a target once
    assert [c.tolist() for c in _windows(seq, 4, "last")] == [[7, 8, 9, 10, 11]]
    assert [c.tolist() for c in _windows(np.array([3, 4]), 4, "all")] == [[3, 4]]


def test_all_windows_learn_transitions_outside_the_last_window():
    """Each user walks the cycle 0-1-2-3 for 8 steps, then 4-5-6-7 for 8: with max_length 4 the
    last window only holds the second cycle; windows="all" also trains on the first."""
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(60):
        a, b = rng.integers(0, 4, size=2)
        seqs.append([(a + i) % 4 for i in range(8)] + [4 + (b + i) % 4 for i in range(8)])
    ui, times = sequences_to_user_items(seqs, N_ITEMS)
    params = dict(TINY, num_heads=1, max_length=4, validation_users=0, epochs=30)
    every = SASRec(windows="all", **params).fit(ui, interaction_times=times)
    last = SASRec(**params).fit(ui, interaction_times=times)
    probe = [[0, 1, 2], [2, 3], [3, 0, 1]]
    assert every.recommend_sequences(probe, k=1, filter_already_liked_items=False)[0][:, 0].tolist() == [3, 0, 2]
    assert set(last.recommend_sequences(probe, k=1, filter_already_liked_items=False)[0][:, 0].tolist()) <= {4, 5, 6, 7}
    assert every.get_params()["windows"] == "all"
    with pytest.raises(ValueError, match="windows"):
        SASRec(windows="some", **params).fit(ui, interaction_times=times)
