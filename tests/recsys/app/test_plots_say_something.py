"""Plots that say something (issue 14, item 9): dots instead of zero-width bars, legends listing only what is
drawn and not covering marks, novelty on its own axis, index-curve tick labels that do not overlap, and a
random-weights note on every figure made with random weights. Figures are captured at save time."""

from __future__ import annotations

from types import SimpleNamespace as NS

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from embeddings.plotting import RANDOM_WEIGHTS_NOTE  # noqa: E402


@pytest.fixture
def saved(monkeypatch):
    """Record every figure passed to Figure.savefig (drawn, so text extents are known)."""
    from matplotlib.figure import Figure

    figs, real = [], Figure.savefig

    def spy(self, *a, **kw):
        figs.append(self)
        return real(self, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", spy)
    monkeypatch.setattr("matplotlib.pyplot.close", lambda *a, **k: None)  # keep them inspectable
    return figs


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.texts]


def test_query_confidence_zero_values_visible_and_legend_only_shows_drawn(saved, tmp_path):
    from recsys.app.report import plot_query_confidence

    oc = [NS(query="a red circle", confidence=0.0, triggered=False),
          NS(query="a boat", confidence=0.0, triggered=False)]
    plot_query_confidence(oc, tmp_path / "qc.png", 0.5, random_weights=True)
    (fig,) = saved
    ax = fig.axes[0]
    labels = ax.get_legend().get_texts()
    assert [t.get_text() for t in labels] == ["not triggered", "threshold 0.500"]  # no unused colour
    dots = [c for c in ax.collections if c.get_offsets().shape[0] == 2 and c.get_sizes().size]
    assert dots and np.allclose(np.asarray(dots[0].get_offsets())[:, 0], 0.0)  # visible markers at 0
    assert RANDOM_WEIGHTS_NOTE in _texts(fig)
    saved.clear()
    plot_query_confidence(oc, tmp_path / "qc2.png", 0.5)
    assert not any("RANDOM" in t for t in _texts(saved[0]))


def test_novelty_gets_its_own_axis(saved, tmp_path):
    from recsys.evaluation.report import plot_bars_with_ci

    summary = pd.DataFrame([{"model": m, "precision@10": 0.2, "ndcg@10": 0.3, "novelty@10": 2.4}
                            for m in ("ease", "popularity")])
    plot_bars_with_ci(summary, tmp_path / "m.png", k=10, title="t")
    (fig,) = saved
    assert len(fig.axes) == 2
    left, right = fig.axes
    assert left.get_ylim() == (0.0, 1.0) and [t.get_text() for t in left.get_xticklabels()] == [
        "precision@10", "ndcg@10"]
    assert right.get_ylim()[1] > 2.4 and [t.get_text() for t in right.get_xticklabels()] == ["novelty@10"]


def test_retrieval_legend_outside_the_panels_and_random_note(saved, tmp_path):
    from recsys.bench.retrieval import _plot

    df = pd.DataFrame([{"encoder": "tiny-clip:none", "level": lv, "direction": d, "recall_1": 0.1,
                        "recall_5": 0.3, "recall_10": 0.5, "random_weights": True}
                       for lv in ("video", "frame") for d in ("text_to_video", "video_to_text")])
    chance = {d: {"recall@1": 0.05, "recall@5": 0.25, "recall@10": 0.5} for d in ("text_to_video", "video_to_text")}
    _plot(df, tmp_path / "c.png", chance)
    (fig,) = saved
    assert all(ax.get_legend() is None for ax in fig.axes)  # nothing drawn over the chance marks
    (legend,) = fig.legends
    assert "chance" in [t.get_text() for t in legend.get_texts()]
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    assert all(not box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    assert any(t.startswith(RANDOM_WEIGHTS_NOTE) and "tiny-clip:none" in t for t in _texts(fig))


def test_index_curve_tick_labels_do_not_overlap(saved, tmp_path):
    from recsys.bench.index import _plot

    # 150 to 1900 QPS: matplotlib's default labelled 2x10^2, 3x10^2, ... on top of each other
    pts = [NS(factory_string=f, qps_batch=150 * (1900 / 150) ** (i / 3) * m,
              qps_single=50 * (1900 / 150) ** (i / 3) * m, recall=0.8 + 0.05 * i)
           for f, m in (("Flat", 1.0), ("HNSW32,Flat", 1.05)) for i in range(4)]
    _plot(pts, tmp_path / "curves.png", 10, 1, True)
    (fig,) = saved
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        labels = [t for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)
                  if t.get_text() and t.get_visible() and lo <= t.get_position()[0] <= hi]
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        assert len(boxes) >= 2
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False)), [t.get_text() for t in labels]
    assert any(t.startswith("RANDOM-WEIGHT") for t in _texts(fig))


def test_risk_coverage_says_random_weights(saved, tmp_path):
    from generation.calibration import plot_risk_coverage

    t = np.linspace(0, 1, 11)
    curve = pd.DataFrame({"threshold": t, "trigger_rate": t, "risk": 1 - t, "coverage": 1 - t})
    plot_risk_coverage(curve, tmp_path / "rc.png", threshold=0.4, random_weights=True)
    assert RANDOM_WEIGHTS_NOTE in _texts(saved[0])


def test_pipeline_metrics_plot_separates_novelty_too(saved, tmp_path):
    from recsys.app.report import plot_metrics

    summary = pd.DataFrame([{"model": "ease", "recall@10": 0.4, "novelty@10": 2.2}])
    plot_metrics(summary, tmp_path / "m.png", k=10)
    (fig,) = saved
    assert len(fig.axes) == 2 and fig.axes[0].get_ylim() == (0.0, 1.0)
