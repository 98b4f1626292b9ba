"""AdamZ's step time against torch.optim.Adam doing the same work, measured side by side.

A 784-1024-1024-10 MLP, batch 64. For each pair, both sides run interleaved in one loop (their
order alternating) on their own copy of the same model, and the ratio of the medians is printed:

* ``step``: ``optimizer.step`` alone, gradients reset before each call, untimed;
* ``train step``: ``zero_grad``, forward, backward and ``step``;

each with AdamZ without clipping vs ``torch.optim.Adam``, and AdamZ with clipping vs
``clip_grad_norm_`` + ``torch.optim.Adam``, at the same ``foreach`` setting. AdamZ's controller
runs its full computation at every step (it has no cheaper warm-up path), so the figures hold
for any step.

The authors' package (PyPI ``adamz`` 0.1.0) installs a module also named ``adamz``; to compare
with it, install it aside and name the folder::

    pip install --no-deps --target /tmp/adamz-authors adamz==0.1.0
    python benchmarks/optimizer_step.py --authors-path /tmp/adamz-authors

On CUDA (``--device cuda``), AdamZ's steps run under ``torch.cuda.set_sync_debug_mode("error")``
(any host-device synchronisation raises) and torch's side also includes fused Adam.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from adamz import AdamZ

Step = Callable[[], None]


def make_model(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    ).to(device)


def load_authors_package(path: Path) -> ModuleType:
    """The authors' ``adamz`` package from ``path``, imported as ``adamz_authors``."""
    package = path / "adamz"
    spec = importlib.util.spec_from_file_location(
        "adamz_authors", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"--authors-path: no adamz package in {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["adamz_authors"] = module
    spec.loader.exec_module(module)
    return module


class Side:
    """One contestant: a model copy, its optimizer, and how one step of it is taken."""

    def __init__(self, base: nn.Module, make_optimizer: Callable[[nn.Module], object]) -> None:
        self.model = copy.deepcopy(base)
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(self.model)


def timed(step: Step, device: torch.device) -> float:
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(
    steps: dict[str, Step], resets: list[Callable[[], None]], device: torch.device, repeats: int
) -> dict[str, float]:
    """Median seconds per call of each step, interleaved, the order alternating each round."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats + 5):
        for name in names if round_ % 2 == 0 else reversed(names):
            for reset in resets:
                reset()
            seconds = timed(steps[name], device)
            if round_ >= 5:  # the first rounds warm up allocators and caches
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def optimizer_step(
    name: str, side: Side, loss: torch.Tensor, clip: bool, foreach: bool, sync_mode: str | None
) -> None:
    """One step of contestant ``name``; torch's Adam clips first when AdamZ's side clips."""
    optimizer = side.optimizer
    if name == "adamz":
        if sync_mode:
            torch.cuda.set_sync_debug_mode(sync_mode)
        optimizer.step(loss=loss)  # type: ignore[attr-defined]
        if sync_mode:
            torch.cuda.set_sync_debug_mode(0)
    elif name == "authors":
        optimizer.step(lambda: loss)  # type: ignore[attr-defined]
    else:
        if clip:
            nn.utils.clip_grad_norm_(side.params, 1.0, foreach=foreach)
        optimizer.step()  # type: ignore[attr-defined]


def contestants_for(
    base: nn.Module, clip: bool, foreach: bool, device: torch.device, authors: ModuleType | None
) -> tuple[dict[str, Side], dict[str, str]]:
    """AdamZ and what it is measured against, with labels for the others."""
    max_grad_norm = 1.0 if clip else None
    sides = {
        "adamz": Side(
            base, lambda m: AdamZ(m.parameters(), max_grad_norm=max_grad_norm, foreach=foreach)
        ),
        "adam": Side(base, lambda m: torch.optim.Adam(m.parameters(), lr=0.01, foreach=foreach)),
    }
    labels = {"adam": "clip_grad_norm_ + Adam" if clip else "torch.optim.Adam"}
    if device.type == "cuda":
        sides["fused"] = Side(base, lambda m: torch.optim.Adam(m.parameters(), lr=0.01, fused=True))
        labels["fused"] = ("clip_grad_norm_ + " if clip else "") + "fused Adam"
    if authors is not None and not clip:  # the authors' package does not clip
        sides["authors"] = Side(
            base, lambda m: authors.AdamZ(m.parameters(), lr=0.01, foreach=foreach)
        )
        labels["authors"] = "authors' adamz 0.1.0"
    return sides, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--foreach", choices=["both", "on", "off"], default="both")
    parser.add_argument("--authors-path", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    authors = load_authors_package(args.authors_path) if args.authors_path else None

    base = make_model(device)
    generator = torch.Generator(device="cpu").manual_seed(1)
    inputs = torch.randn(64, 784, generator=generator).to(device)
    targets = torch.randint(0, 10, (64,), generator=generator).to(device)
    grads = [torch.randn(p.shape, generator=generator).to(device) for p in base.parameters()]
    loss_value = torch.tensor(2.3, device=device)
    sync_mode = "error" if device.type == "cuda" else None

    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"{args.repeats} interleaved repeats, medians in ms"
    )
    print(f"{'measure':<12} {'foreach':<8} {'AdamZ vs':<32} {'AdamZ':>8} {'other':>8} {'ratio':>6}")
    for foreach in {"on": [True], "off": [False], "both": [False, True]}[args.foreach]:
        for clip in (False, True):
            sides, labels = contestants_for(base, clip, foreach, device, authors)

            def reset_grads(side: Side) -> Callable[[], None]:
                def reset() -> None:
                    for param, grad in zip(side.params, grads, strict=True):
                        param.grad = grad.clone()

                return reset

            def step_only(
                name: str, side: Side, clip: bool = clip, foreach: bool = foreach
            ) -> Step:
                return lambda: optimizer_step(name, side, loss_value, clip, foreach, sync_mode)

            def train_step(
                name: str, side: Side, clip: bool = clip, foreach: bool = foreach
            ) -> Step:
                def step() -> None:
                    side.optimizer.zero_grad()  # type: ignore[attr-defined]
                    loss = nn.functional.cross_entropy(side.model(inputs), targets)
                    loss.backward()
                    optimizer_step(name, side, loss, clip, foreach, sync_mode)

                return step

            for measure, make_step, resets in (
                ("step", step_only, [reset_grads(side) for side in sides.values()]),
                ("train step", train_step, []),
            ):
                steps = {name: make_step(name, side) for name, side in sides.items()}
                medians = compare(steps, resets, device, args.repeats)
                for name, label in labels.items():
                    print(
                        f"{measure:<12} {foreach!s:<8} {label:<32} {medians['adamz'] * 1e3:>8.3f} "
                        f"{medians[name] * 1e3:>8.3f} {medians['adamz'] / medians[name]:>6.3f}"
                    )


if __name__ == "__main__":
    main()
