"""The AdamZ optimizer: Adam with a loss-driven learning-rate controller."""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim import Optimizer

from adamz.optim._controller import (
    ControllerState,
    controller_state_to,
    new_controller_state,
    observe_loss_on_device,
    observe_loss_on_host,
    resize_window,
    window_dtype,
)
from adamz.optim._update import adam_update, clip_coefficient, total_grad_norm

__all__ = ["AdamZ"]

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


class AdamZ(Optimizer):
    r"""Adam whose learning rate is steered by the training loss.

    AdamZ (Zaznov, Badii, Kunkel and Dufour, "AdamZ: an enhanced optimisation method for neural
    network training", Neural Computing and Applications 37, 2025,
    https://doi.org/10.1007/s00521-025-11649-w; preprint https://arxiv.org/abs/2411.15375)
    shrinks the rate when the loss overshoots and raises it when the loss stagnates.

    Each step :math:`t`, for every parameter group with rate :math:`\alpha`:

    .. math::
        \begin{aligned}
        &1.\ g_t \leftarrow g_t \min\!\left(1, \tfrac{N_{max}}{\lVert g_t \rVert + 10^{-6}}\right)
            &&\text{one norm over all groups' parameters} \\
        &2.\ m_t = \beta_1 m_{t-1} + (1-\beta_1)(g_t + \lambda\theta_{t-1}), \quad
             v_t = \beta_2 v_{t-1} + (1-\beta_2)(g_t + \lambda\theta_{t-1})^2 \\
        &\phantom{2.}\ \theta_t = \theta_{t-1} - \alpha\,\frac{m_t/(1-\beta_1^t)}
             {\sqrt{v_t/(1-\beta_2^t)} + \epsilon} \\
        &3.\ W \leftarrow (L_{t-p+1}, \dots, L_t)\ \text{the last } p \text{ finite losses},
             \quad S \leftarrow \text{its last } s
            &&\text{steps 3 and 4 only if } c \\
        &4.\ \text{once } |W| = p: \quad
             L_t \ge \max W \Rightarrow \alpha \leftarrow \gamma_{over}\,\alpha, \qquad
             \operatorname{std} S < \sigma_{stag} \operatorname{std} W
             \Rightarrow \alpha \leftarrow \gamma_{stag}\,\alpha \\
        &\phantom{4.}\ \alpha \leftarrow \min(\max(\alpha, \alpha_{min}), \alpha_{max})
        \end{aligned}

    The two tests of step 4 are independent (both may fire in one step), use population
    standard deviations, and the new rate applies from the next step. With the controller off
    (:math:`c` false, ``lr_controller=False``) steps 3 and 4 are skipped: the rate stays
    :math:`\alpha` and the step is Adam after global gradient-norm clipping, the ablation that
    tells the controller's share of a result from the clipping's (``max_grad_norm=None`` as
    well gives plain Adam). A non-finite loss is not
    entered into the window (it is counted). With the same controller settings in every group
    all groups receive the same multiplier, so the ratio of their rates is kept until a bound
    is reached.

    How the loss arrives:

    * ``optimizer.step(loss=loss)`` after ``loss.backward()``, the usual loop; with AMP,
      ``scaler.step(optimizer, loss=loss)`` (pass the unscaled loss);
    * ``optimizer.step(closure)``: the closure re-evaluates the model and returns the loss;
    * ``optimizer.step()`` with neither: the controller cannot see the loss, so the step is plain
      Adam; this is warned about once.

    With a loss on an accelerator the rate becomes a 0-dim tensor on the loss's device:
    ``param_groups[i]["lr"]`` then holds a tensor (float64; float32 on MPS), which the controller
    never reads back, so a CUDA step does not synchronise with the device. A float written into
    ``"lr"`` by you or by an LR scheduler is taken up at the next step. On the CPU, where reading
    a value costs nothing, the rate stays a float. :meth:`controller_stats` gives plain numbers.

    All controller state (the loss window, counts, the rates) lives in the param groups, so
    ``state_dict()`` / ``load_state_dict()`` resume exactly; every hyperparameter can be
    overridden per group.

    Where this implementation departs from the authors' code (which departs from their paper):

    * the rate is adjusted *after* the Adam update, as the paper says, not before;
    * gradients of *all* groups are clipped together (their experiments' code clips the first
      group only; their packaged version does not clip);
    * the loss window is optimizer state, saved by ``state_dict()`` (theirs is lost on resume);
    * the loss is passed without a host read (theirs calls ``loss.item()`` every step);
    * ``step()`` without a loss warns instead of silently acting as plain Adam;
    * the default rate is the paper's 0.01 (their package: 1e-3).

    Args:
        params: parameters or param group dicts to optimise.
        lr: initial learning rate :math:`\alpha` (default: 0.01).
        betas: :math:`(\beta_1, \beta_2)`, decay rates of the moment estimates
            (default: (0.9, 0.999)).
        eps: :math:`\epsilon`, added to the denominator (default: 1e-8).
        weight_decay: :math:`\lambda`, L2 penalty added to the gradient as in
            ``torch.optim.Adam`` (default: 0).
        overshoot_factor: :math:`\gamma_{over} \in (0, 1)`, rate multiplier on overshoot
            (default: 0.5).
        stagnation_factor: :math:`\gamma_{stag} > 1`, rate multiplier on stagnation
            (default: 1.2).
        stagnation_threshold: :math:`\sigma_{stag} \ge 0`, relative spread below which the
            loss stagnates (default: 0.2).
        patience: :math:`p`, length of the loss window; nothing is adjusted before it is full
            (default: 100).
        stagnation_period: :math:`s \le p`, number of recent losses tested for stagnation
            (default: 10).
        max_grad_norm: :math:`N_{max}`, total gradient norm to clip to, or ``None`` for no
            clipping (default: 1.0).
        lr_bounds: :math:`(\alpha_{min}, \alpha_{max})`, the rate is kept within them
            (default: (1e-7, 1.0)).
        lr_controller: :math:`c`, whether the loss steers the rate (steps 3 and 4); ``False``
            keeps the rate fixed, and ``step()`` then needs no loss (default: True).
        foreach: use the multi-tensor (``torch._foreach``) implementation; ``None`` picks it
            when every parameter is on CUDA or XPU (default: None).

    Raises:
        ValueError: for an invalid hyperparameter, naming it, the rule and the value.
        RuntimeError: at ``step`` for a sparse gradient, which AdamZ does not support.

    Example:
        >>> optimizer = AdamZ(model.parameters(), lr=0.01)
        >>> for inputs, targets in loader:
        ...     optimizer.zero_grad()
        ...     loss = loss_fn(model(inputs), targets)
        ...     loss.backward()
        ...     optimizer.step(loss=loss)
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        overshoot_factor: float = 0.5,
        stagnation_factor: float = 1.2,
        stagnation_threshold: float = 0.2,
        patience: int = 100,
        stagnation_period: int = 10,
        max_grad_norm: float | None = 1.0,
        lr_bounds: tuple[float, float] = (1e-7, 1.0),
        lr_controller: bool = True,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "overshoot_factor": overshoot_factor,
            "stagnation_factor": stagnation_factor,
            "stagnation_threshold": stagnation_threshold,
            "patience": patience,
            "stagnation_period": stagnation_period,
            "max_grad_norm": max_grad_norm,
            "lr_bounds": lr_bounds,
            "lr_controller": lr_controller,
            "foreach": foreach,
        }
        validate_hyperparameters(defaults)
        self._warned_without_loss = False
        super().__init__(params, defaults)

    CONFIG_KEYS = frozenset({"format", "optimizer", "hyperparameters", "provenance"})
    """Top-level keys of a configuration file written by ``adamz-search export``."""

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | str | os.PathLike[str], params: ParamsT
    ) -> AdamZ:
        """AdamZ over ``params`` from a configuration: a mapping, a YAML or JSON file, or the
        name of a preset shipped with the package (:data:`PRESETS`: ``"recommended"``, the
        defaults the project's own studies validated, see ``reports/README.md``; ``"paper"``,
        the paper's).

        The configuration is either AdamZ's keyword arguments themselves
        (``{"lr": 0.01, "betas": [0.9, 0.999]}``; pairs as lists), or the file
        ``adamz-search export`` writes: ``hyperparameters`` (those keyword arguments) beside
        ``format``, ``optimizer`` (must be ``adamz``) and ``provenance`` (read by people, ignored
        here). Missing hyperparameters take their defaults.

        Raises:
            ValueError: an unknown key (naming it), another optimizer's configuration, a file
                that is not a mapping, an unknown preset, or an invalid value (as the
                constructor).
            OSError: the file cannot be read.
        """
        if isinstance(config, Mapping):
            content: Any = dict(config)
            source = "the configuration"
        else:
            path = Path(config)
            if isinstance(config, str) and not path.suffix and not path.exists():
                path = preset_path(config)
            source = str(path)
            text = path.read_text()
            if path.suffix.lower() == ".json":
                content = json.loads(text)
            else:
                import yaml  # only for YAML files: the optimizer itself needs nothing but torch

                content = yaml.safe_load(text)
        if not isinstance(content, dict):
            raise ValueError(
                f"Invalid configuration in {source}: must be a mapping, got {content!r}."
            )
        if "hyperparameters" in content:
            unknown = sorted(set(content) - cls.CONFIG_KEYS)
            if unknown:
                raise ValueError(
                    f"Unknown key(s) {', '.join(unknown)} in {source}: allowed are "
                    f"{', '.join(sorted(cls.CONFIG_KEYS))}."
                )
            if content.get("optimizer", "adamz") != "adamz":
                raise ValueError(
                    f"Invalid optimizer in {source}: must be adamz, got {content['optimizer']!r}; "
                    "its hyperparameters are that optimizer's keyword arguments (for adam: "
                    'torch.optim.Adam(params, **config["hyperparameters"])).'
                )
            hyperparameters = content["hyperparameters"]
            if not isinstance(hyperparameters, dict):
                raise ValueError(f"Invalid hyperparameters in {source}: must be a mapping.")
        else:
            hyperparameters = content
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
        unknown = sorted(set(hyperparameters) - known)
        if unknown:
            raise ValueError(
                f"Unknown AdamZ hyperparameter(s) {', '.join(map(str, unknown))} in {source}: "
                f"must be among {', '.join(sorted(known))}."
            )
        kwargs: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in hyperparameters.items()
        }
        return cls(params, **kwargs)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, validating its hyperparameters (the defaults fill the rest)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        validate_hyperparameters(group)
        group["betas"] = (float(group["betas"][0]), float(group["betas"][1]))
        group["lr_bounds"] = (float(group["lr_bounds"][0]), float(group["lr_bounds"][1]))

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_warned_without_loss", False)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("lr_controller", True)  # saved before the controller could be off

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [
                f"    {key}: {group[key]}"
                for key in sorted(group)
                if key not in ("params", "controller")
            ]
        return "\n".join([*lines, ")"])

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Tensor] | None = None,
        *,
        loss: Tensor | float | None = None,
    ) -> Tensor | float | None:
        """Perform one optimisation step and feed the loss to the rate controller.

        Args:
            closure: re-evaluates the model and returns the loss (as for ``torch.optim.LBFGS``).
            loss: the loss of this step, already back-propagated. Give one of the two.

        Returns:
            The loss, or ``None`` when neither was given.

        Raises:
            ValueError: both a closure and a loss were given, or the loss is not one value.
            RuntimeError: a gradient is sparse.
        """
        if closure is not None:
            if loss is not None:
                raise ValueError("Give the loss either through closure or through loss=, not both.")
            with torch.enable_grad():
                loss = closure()
        elif (
            loss is None
            and not self._warned_without_loss
            and any(group["lr_controller"] for group in self.param_groups)
        ):
            self._warned_without_loss = True
            warnings.warn(
                "AdamZ.step() was called without a loss: the learning-rate controller is off and "
                "these steps are plain Adam. Call step(loss=loss) or step(closure).",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )

        groups = [self._gather(group) for group in self.param_groups]
        self._clip(groups)
        for group, (params, grads, exp_avgs, exp_avg_sqs, steps) in zip(
            self.param_groups, groups, strict=True
        ):
            lr = group["lr"]
            if isinstance(lr, Tensor) and params and lr.device != params[0].device:
                lr = lr.to(params[0].device)
            adam_update(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                steps,
                lr=lr,
                beta1=group["betas"][0],
                beta2=group["betas"][1],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                foreach=_uses_foreach(group),
            )
        if loss is not None:
            self._observe(loss)
        return loss

    def controller_stats(self) -> list[dict[str, float | int]]:
        """Per group: current rate, losses observed, non-finite losses, overshoots, stagnations.

        Reads the values back to the host: call it for logging, not inside the training step.
        """
        stats: list[dict[str, float | int]] = []
        for group in self.param_groups:
            controller: ControllerState | None = group.get("controller")
            counts = {"observed": 0, "nonfinite": 0, "overshoots": 0, "stagnations": 0}
            if controller is not None:
                counts = {key: int(controller[key]) for key in counts}  # type: ignore[literal-required]
            stats.append({"lr": float(group["lr"]), **counts})
        return stats

    def _gather(
        self, group: dict[str, Any]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor], list[int]]:
        """The group's parameters that have gradients, their state, and their step counts."""
        params: list[Tensor] = []
        grads: list[Tensor] = []
        exp_avgs: list[Tensor] = []
        exp_avg_sqs: list[Tensor] = []
        steps: list[int] = []
        for param in group["params"]:
            if param.grad is None:
                continue
            if param.grad.is_sparse:
                raise RuntimeError(
                    "AdamZ does not support sparse gradients; use torch.optim.SparseAdam."
                )
            state = self.state[param]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["step"] += 1
            params.append(param)
            grads.append(param.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return params, grads, exp_avgs, exp_avg_sqs, steps

    def _clip(self, groups: list[tuple[list[Tensor], list[Tensor], Any, Any, Any]]) -> None:
        """Scale the gradients in place so that their norm, over all clipping groups, is bounded."""
        clipping = [
            (group, grads)
            for group, (_, grads, *_rest) in zip(self.param_groups, groups, strict=True)
            if group["max_grad_norm"] is not None and grads
        ]
        if not clipping:
            return
        all_grads = [grad for _, grads in clipping for grad in grads]
        total_norm = total_grad_norm(all_grads, foreach=_uses_foreach(clipping[0][0]))
        for group, grads in clipping:
            coefficient = clip_coefficient(total_norm, group["max_grad_norm"])
            if coefficient.device != grads[0].device:
                coefficient = coefficient.to(grads[0].device)
            if _uses_foreach(group):
                torch._foreach_mul_(grads, coefficient)
            else:
                for grad in grads:
                    grad.mul_(coefficient)

    def _observe(self, loss: Tensor | float) -> None:
        """Feed this step's loss to every group's controller and store the groups' next rates.

        A plain tensor on the CPU is read on the host, where that is free; anything else (an
        accelerator's tensor, a tensor subclass such as a fake or distributed tensor) is handled
        with tensor operations that never read it back.
        """
        if not isinstance(loss, Tensor):
            device = next(p.device for g in self.param_groups for p in g["params"])
            loss = torch.tensor(float(loss), device=device)
        if loss.numel() != 1:
            raise ValueError(
                f"loss must be a single value, got a tensor of shape {tuple(loss.shape)}."
            )
        on_host = loss.device.type == "cpu" and type(loss) is Tensor
        device = loss.device
        dtype = window_dtype(device)
        value: Tensor | float = float(loss) if on_host else loss.detach().reshape(()).to(dtype)
        for group in self.param_groups:
            if not group["lr_controller"]:
                continue
            controller = self._controller_state(group, device)
            hyperparameters = {
                "overshoot_factor": group["overshoot_factor"],
                "stagnation_factor": group["stagnation_factor"],
                "stagnation_threshold": group["stagnation_threshold"],
                "stagnation_period": group["stagnation_period"],
                "lr_bounds": group["lr_bounds"],
            }
            lr = group["lr"]
            if on_host:
                group["lr"] = observe_loss_on_host(
                    controller, cast(float, value), float(lr), **hyperparameters
                )
                continue
            if not isinstance(lr, Tensor):
                lr = torch.tensor(float(lr), dtype=dtype, device=device)
            elif lr.device != device or lr.dtype != dtype:
                lr = lr.to(device=device, dtype=dtype)
            group["lr"] = observe_loss_on_device(
                controller, cast(Tensor, value), lr, **hyperparameters
            )

    @staticmethod
    def _controller_state(group: dict[str, Any], device: torch.device) -> ControllerState:
        """The group's controller state on ``device``, created or moved there if needed."""
        controller: ControllerState | None = group.get("controller")
        if controller is None:
            controller = new_controller_state(group["patience"], device)
        elif controller["loss_window"].device != device:
            controller = controller_state_to(controller, device)
        if controller["loss_window"].numel() != group["patience"]:
            controller = resize_window(controller, group["patience"])
        group["controller"] = controller
        return controller


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def _caller_stacklevel() -> int:
    """The ``stacklevel`` at which a warning raised in :meth:`AdamZ.step` names the line that
    called ``step``, not torch's ``no_grad`` decorator, an LR scheduler's or a GradScaler's
    wrapper around ``step``, whose number varies with how the optimizer is used.

    Level 1 is the function that calls ``warnings.warn``; the count skips this module's frames
    and torch's.
    """
    level = 1
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None  # the caller of this function: level 1
    while frame is not None and frame.f_back is not None:
        filename = frame.f_code.co_filename
        if filename != __file__ and not filename.startswith(_TORCH_DIR):
            break
        frame = frame.f_back
        level += 1
    return level


def _uses_foreach(group: dict[str, Any]) -> bool:
    """The group's ``foreach`` setting; ``None`` means: when every parameter is on CUDA or XPU.

    Like torch.optim's default: on CPU the multi-tensor kernels are loops over the same kernels,
    so the plain loop is the default there.
    """
    if group["foreach"] is not None:
        return cast(bool, group["foreach"])
    return all(p.device.type in ("cuda", "xpu") for p in group["params"])


def validate_hyperparameters(hyperparameters: dict[str, Any]) -> None:
    """Check AdamZ's hyperparameters, raising ``ValueError`` that names the rule and the value.

    ``hyperparameters`` holds the keyword arguments of :class:`AdamZ` (a param group, or the
    defaults). The rules are the paper's domains of the six controller hyperparameters and
    torch.optim.Adam's checks for the rest.
    """
    lr = hyperparameters["lr"]
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(
                f"Invalid lr: a tensor rate must hold one value, got shape {tuple(lr.shape)}."
            )
        lr = float(lr)
    betas = hyperparameters["betas"]
    lr_bounds = hyperparameters["lr_bounds"]
    _require("betas", _is_pair(betas), "must be a pair (beta1, beta2)", betas)
    _require("lr_bounds", _is_pair(lr_bounds), "must be a pair (min_lr, max_lr)", lr_bounds)
    # Comparisons with NaN are False, so NaN fails every rule below.
    _require("lr", lr > 0, "must be > 0", lr)
    _require("betas[0]", 0 <= betas[0] < 1, "must be in [0, 1)", betas[0])
    _require("betas[1]", 0 <= betas[1] < 1, "must be in [0, 1)", betas[1])
    for name, valid, rule in (
        ("eps", lambda v: v >= 0, "must be >= 0"),
        ("weight_decay", lambda v: v >= 0, "must be >= 0"),
        ("overshoot_factor", lambda v: 0 < v < 1, "must be in (0, 1)"),
        ("stagnation_factor", lambda v: v > 1, "must be > 1"),
        ("stagnation_threshold", lambda v: v >= 0, "must be >= 0"),
    ):
        value = hyperparameters[name]
        _require(name, _is_real(value) and valid(value), rule, value)
    patience = hyperparameters["patience"]
    period = hyperparameters["stagnation_period"]
    _require("patience", _is_int(patience) and patience >= 1, "must be an integer >= 1", patience)
    _require(
        "stagnation_period",
        _is_int(period) and 1 <= period <= patience,
        f"must be an integer in [1, patience={patience}]",
        period,
    )
    _require(
        "lr_bounds",
        all(map(_is_real, lr_bounds)) and 0 < lr_bounds[0] <= lr_bounds[1],
        "must satisfy 0 < min_lr <= max_lr",
        lr_bounds,
    )
    _require(
        "lr",
        lr_bounds[0] <= lr <= lr_bounds[1],
        f"must lie within lr_bounds={tuple(lr_bounds)}",
        lr,
    )
    max_grad_norm = hyperparameters["max_grad_norm"]
    _require(
        "max_grad_norm",
        max_grad_norm is None or (_is_real(max_grad_norm) and max_grad_norm > 0),
        "must be > 0 (or None for no clipping)",
        max_grad_norm,
    )
    lr_controller = hyperparameters.get("lr_controller", True)
    _require(
        "lr_controller", isinstance(lr_controller, bool), "must be True or False", lr_controller
    )


def _require(name: str, valid: bool, rule: str, value: Any) -> None:
    if not valid:
        raise ValueError(f"Invalid {name}: {rule}, got {value!r}.")


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple | list) and len(value) == 2 and all(map(_is_real, value))


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def presets() -> list[str]:
    """Names of the configurations shipped with the package (``AdamZ.from_config(name)``)."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The file of preset ``name``; raises ``ValueError`` naming the presets there are."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"Invalid config {name!r}: not a file, and not a preset (presets: "
            f"{', '.join(presets())})."
        )
    return path
