"""``python -m adamz.demo``: says what it trains before it trains it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from adamz.demo import main


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One CPU thread: the model is tiny, and threads spin against each other on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_demo_says_what_it_trains_then_prints_a_row_per_epoch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--epochs", "2"]) == 0
    first, header, *rows = capsys.readouterr().out.splitlines()
    for fragment in ("MLP (64-64-10)", "8x8 digits", "no download", "2 epochs", "AdamZ"):
        assert fragment in first
    assert header.split() == ["epoch", "accuracy", "lr", "overshoots", "stagnations"]
    assert [row.split()[0] for row in rows] == ["1", "2"]
