"""A one-minute look at AdamZ: train a small classifier and watch the controller move the rate.

Run it with ``python -m adamz.demo``. It trains a small MLP on scikit-learn's bundled 8x8 digits
(no download) with AdamZ at the paper's defaults, except a shorter ``patience`` so that the
controller acts within a few epochs, and prints, per epoch, the test accuracy, the rate and how
often the controller shrank or raised it.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from adamz import AdamZ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adamz.demo", description=__doc__)
    parser.add_argument("--epochs", type=int, default=8, help="(default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="model, split and batch order (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=args.seed
    )
    inputs, targets = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train)
    test_inputs, test_targets = torch.tensor(x_test, dtype=torch.float32), torch.tensor(y_test)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = AdamZ(model.parameters(), lr=0.01, patience=20, stagnation_period=5)

    print(
        f"Training an MLP (64-64-10) on scikit-learn's 8x8 digits ({len(inputs)} training and "
        f"{len(test_inputs)} test images, bundled: no download) for {args.epochs} epochs with "
        "AdamZ at the paper's defaults, except patience=20 and stagnation_period=5 so that its "
        "controller acts within these few epochs."
    )
    print(f"{'epoch':>5} {'accuracy':>9} {'lr':>10} {'overshoots':>10} {'stagnations':>11}")
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in torch.randperm(len(inputs)).split(64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step(loss=loss)
        model.eval()
        with torch.no_grad():
            accuracy = (model(test_inputs).argmax(1) == test_targets).float().mean().item()
        stats = optimizer.controller_stats()[0]
        print(
            f"{epoch:>5} {accuracy:>9.2%} {stats['lr']:>10.2e} "
            f"{stats['overshoots']:>10} {stats['stagnations']:>11}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
