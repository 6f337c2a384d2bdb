"""One progress-bar factory for long stages (evaluate, tune, calibrate, embed): tqdm on stderr.

A bar shows only when asked for (the CLI asks unless ``-q``) and when stderr is a terminal, so logs,
pipes and CI output carry no bar lines.
"""

from __future__ import annotations


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, **kwargs):
    """A ``tqdm.auto.tqdm`` bar, disabled unless ``enabled`` and stderr is a TTY.

    Parameters
    ----------
    total : int
        Steps expected.
    desc, unit : str
        Label and unit shown by tqdm.
    enabled : bool
        False (``-q``, library callers by default) disables the bar.
    **kwargs
        Passed to ``tqdm`` (e.g. ``initial``).

    Returns
    -------
    tqdm.tqdm
        Use ``update``/``set_postfix_str``/``close``, or as a context manager.
    """
    from tqdm.auto import tqdm

    # disable=None: tqdm turns the bar off when its file (stderr) is not a terminal
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, **kwargs)
