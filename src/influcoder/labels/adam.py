"""Adam's moments saved by parameter name, and LESS's Adam preconditioning of per-example gradients.

LESS (Xia et al. 2024, section 3) scores a training sample by the *Adam update* its gradient would cause,
not by the raw gradient: with the optimizer's first and second moments m, v of a warm-up run,

    Gamma(g) = m' / sqrt(v' + eps),   m' = beta1 m + (1 - beta1) g,   v' = beta2 v + (1 - beta2) g^2,

applied elementwise to each training (pool) gradient; query gradients stay plain (SGD). As in LESS's code, the
stored moments are used as saved, not bias-corrected. (The correction is one scalar per moment, but it would
weigh the stored moments against the sample's own gradient differently: after 13 steps it multiplies v by 77,
after 256 by 4.4; so this choice is LESS's, not a neutral one.)

The first term dominates: on the toxicity task each sample's update lies close to the shared
0.9 m / sqrt(0.999 v) part, so samples differ only by what their 10% share adds, and ranking the unsafe ones by
it is weaker than by the plain gradient (`benchmarks/less_momentum.py`; figures in docs/results/toxicity.md,
"Why LESS is weak here").

The moments are saved by parameter name (not by torch's positional optimizer state), so they match the
gradient blocks of a model that loaded the adapter in another process.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from influcoder.core.errors import ArtifactMismatchError, InflucoderError


def save_adam_state(path: str | Path, params: Mapping[str, torch.nn.Parameter], optimizer) -> None:
    """Write the moments and hyper-parameters of `optimizer` (Adam or AdamW over `params`) to `path`."""
    from influcoder.core.atomic import atomic_output

    group = optimizer.param_groups[0]
    state = {"betas": tuple(group["betas"]), "eps": float(group["eps"]), "moments": {}}
    for name, param in params.items():
        s = optimizer.state.get(param, {})
        if "exp_avg" in s:
            state["moments"][name] = {
                "exp_avg": s["exp_avg"].detach().cpu().clone(),
                "exp_avg_sq": s["exp_avg_sq"].detach().cpu().clone(),
                "step": float(s["step"]),
            }
    with atomic_output(Path(path), fsync=True) as tmp:
        torch.save(state, tmp)


def read_adam_state(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise InflucoderError(f"{path}: no optimizer state (written by `influcoder finetune` as optimizer.pt)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "moments" not in state:
        raise InflucoderError(f"{path} is not an optimizer state written by influcoder finetune")
    return state


def load_adam_state_into(path: str | Path, params: Mapping[str, torch.nn.Parameter], optimizer) -> None:
    """Restore saved moments into a fresh `optimizer` over `params` (resuming a fine-tuning run)."""
    state = read_adam_state(path)
    for name, param in params.items():
        saved = state["moments"].get(name)
        if saved is None:
            continue
        optimizer.state[param] = {
            "exp_avg": saved["exp_avg"].to(param.device, param.dtype),
            "exp_avg_sq": saved["exp_avg_sq"].to(param.device, param.dtype),
            "step": torch.tensor(saved["step"]),
        }


class AdamPreconditioner:
    """Maps per-example gradient blocks {name: (batch, *shape)} to LESS's Adam-preconditioned blocks."""

    def __init__(self, state: dict, names: list[str]):
        missing = [n for n in names if n not in state["moments"]]
        if missing:
            raise ArtifactMismatchError(
                f"the optimizer state has no moments for {len(missing)} of the {len(names)} adapter parameters "
                f"(e.g. {missing[0]}): it belongs to another adapter"
            )
        self.beta1, self.beta2 = state["betas"]
        self.eps = state["eps"]
        self.moments = {n: (state["moments"][n]["exp_avg"], state["moments"][n]["exp_avg_sq"]) for n in names}

    @classmethod
    def from_file(cls, path: str | Path, names: list[str]) -> AdamPreconditioner:
        return cls(read_adam_state(path), names)

    def __call__(self, blocks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for name, g in blocks.items():
            m, v = (t.to(g.device, g.dtype) for t in self.moments[name])
            if m.shape != g.shape[1:]:
                raise ArtifactMismatchError(
                    f"{name}: optimizer moment shape {tuple(m.shape)} != gradient {g.shape[1:]}"
                )
            first = self.beta1 * m + (1 - self.beta1) * g
            second = self.beta2 * v + (1 - self.beta2) * g.square()
            out[name] = first / torch.sqrt(second + self.eps)
        return out
