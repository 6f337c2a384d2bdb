"""Shared figure helpers: the random-weights warning every plot of random-weight outputs carries."""

from __future__ import annotations

RANDOM_WEIGHTS_NOTE = "RANDOM-WEIGHT ENCODER: these scores are not meaningful (a plumbing check only)"


def mark_random_weights(fig, random_weights: bool, *, what: str = "", note: str = RANDOM_WEIGHTS_NOTE) -> bool:
    """Write :data:`RANDOM_WEIGHTS_NOTE` in red above ``fig`` when ``random_weights`` is true.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Saved afterwards with ``bbox_inches="tight"``, so text above the axes is kept.
    random_weights : bool
        Whether the plotted numbers come from an encoder with seeded random weights.
    what : str
        Optional detail appended to the note (e.g. which encoders).
    note : str
        The sentence itself (default :data:`RANDOM_WEIGHTS_NOTE`); must start with "RANDOM-WEIGHT".

    Returns
    -------
    bool
        Whether the note was written.
    """
    if random_weights:
        fig.text(0.5, 1.0, note + (f" ({what})" if what else ""), ha="center", va="bottom",
                 color="tab:red", fontsize=9, fontweight="bold")
    return bool(random_weights)
