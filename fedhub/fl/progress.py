"""Progress display: a tqdm bar in a terminal, an ipywidgets bar in a notebook."""

from __future__ import annotations

import sys


class NoProgress:
    def update(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TqdmProgress:
    def __init__(self, total: int, initial: int = 0) -> None:
        # tqdm.std, not tqdm.auto: "tqdm" asks for the text bar even inside a notebook.
        from tqdm.std import tqdm

        self.bar = tqdm(total=total, initial=initial, desc="fl", unit="round", file=sys.stderr)

    def update(self, record: dict) -> None:
        self.bar.set_postfix_str(_summary(record))
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class WidgetProgress:
    """An ipywidgets progress bar with the latest round's metrics beside it."""

    def __init__(self, total: int, initial: int = 0) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=initial, min=0, max=total, description="rounds")
        self.label = widgets.HTML(value=f"{initial}/{total}")
        self.box = widgets.HBox([self.bar, self.label])
        self.total = total
        display(self.box)

    def update(self, record: dict) -> None:
        self.bar.value = record["round"]
        self.label.value = f"{record['round']}/{self.total} · {_summary(record)}"

    def close(self) -> None:
        self.bar.bar_style = "success" if self.bar.value >= self.total else "warning"


def _summary(record: dict) -> str:
    """The round's headline metrics: accuracy and loss, or an RL run's reward and delay."""
    if "test_accuracy" in record:
        return f"accuracy {record['test_accuracy']:.3f} · loss {record['test_loss']:.3f}"
    reward, delay = record.get("reward", float("nan")), record.get("mean_delay", float("nan"))
    return f"reward {reward:.3f} · delay {delay:.1f} s"


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_progress(mode: str | None, total: int, initial: int = 0):
    """``"auto"`` picks the widget in a notebook, tqdm on a terminal, nothing otherwise."""
    if mode is None or mode is False:
        return NoProgress()
    if mode == "auto":
        if in_notebook():
            mode = "widget"
        elif sys.stderr.isatty():
            mode = "tqdm"
        else:
            return NoProgress()
    if mode == "widget":
        try:
            return WidgetProgress(total, initial)
        except ImportError:
            mode = "tqdm"
    if mode == "tqdm":
        return TqdmProgress(total, initial)
    raise ValueError("progress must be 'auto', 'tqdm', 'widget' or None")
