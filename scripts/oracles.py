"""Regenerates the reference values our tests compare against, from PyTorch itself.

    .venv-ref/bin/python scripts/oracles.py      # after scripts/setup-reference.sh

Writes crates/myoscope/tests/fixtures/*.json. The problems are defined by closed-form
formulas (sines and cosines of indices), so the Rust tests rebuild the same inputs without
reading any tensor file.
"""
import json
import math
import pathlib

import torch

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures"


def formula(shape, a, b, scale, fn):
    n = math.prod(shape)
    idx = torch.arange(n, dtype=torch.float32)
    return (fn(idx * a + b) * scale).reshape(shape)


def radam_problem():
    """A small tanh MLP regression: enough curvature that RAdam's warm-up and rectified
    phases both matter over 200 steps."""
    params = {
        "w1": formula((8, 5), 0.37, 0.0, 0.5, torch.sin),
        "b1": formula((5,), 1.0, 0.0, 0.1, torch.cos),
        "w2": formula((5, 3), 0.21, 0.3, 0.5, torch.cos),
    }
    x = formula((16, 8), 0.13, 1.0, 1.0, torch.sin)
    y = formula((16, 3), 0.07, 0.0, 1.0, torch.cos)
    return params, x, y


def radam_case(lr, weight_decay, decoupled, steps=200):
    params, x, y = radam_problem()
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.RAdam(list(ps.values()), lr=lr, weight_decay=weight_decay,
                            decoupled_weight_decay=decoupled)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((torch.tanh(x @ ps["w1"] + ps["b1"]) @ ps["w2"] - y) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return {
        "lr": lr,
        "weight_decay": weight_decay,
        "decoupled_weight_decay": decoupled,
        "steps": steps,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "params": {k: v.detach().flatten().tolist() for k, v in ps.items()},
    }


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    radam = {
        "torch_version": torch.__version__,
        "problem": "loss = mean((tanh(x @ w1 + b1) @ w2 - y)^2); see scripts/oracles.py",
        "cases": [
            radam_case(1e-2, 0.0, False),
            radam_case(1e-2, 0.1, False),
            radam_case(3e-3, 0.1, True),
        ],
    }
    (FIXTURES / "radam.json").write_text(json.dumps(radam, indent=1) + "\n")
    print(f"wrote {FIXTURES / 'radam.json'}")


if __name__ == "__main__":
    main()
