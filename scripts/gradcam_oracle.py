"""PyTorch oracle for myoscope's Grad-CAM (crates/myoscope/src/explain/gradcam.rs).

Grad-CAM differentiates the class confidences with respect to the trunk's last feature maps,
so the formula lives entirely in the heads of the aggregated classifier. This script draws
seeded patch feature maps A [B*g*g, C, h, w] and head weights, evaluates both heat-maps with
torch.autograd, and writes crates/myoscope/tests/fixtures/gradcam.json; the Rust test loads the
same maps and weights into an aggregated densenet-tiny (C = 90 channels) and must agree to 1e-4.

  - plain:          alpha = spatial mean over the stitched mosaic of d(logit_c)/dA;
                    map = ReLU(sum_ch alpha * A)
  - patch-weighted: y_k = softmax(patch logits of patch k)[c]; for patch k,
                    grad_k = (y_k / sum_i y_i) * dy_k/dA_k, alpha_k = spatial mean of grad_k,
                    map_k = ReLU(sum_ch alpha_k * A_k); maps stitched in row-major patch order

Run with:  .venv-ref/bin/python scripts/gradcam_oracle.py
"""
import json
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures/gradcam.json"
GRID, CHANNELS, H, W, CLASSES, BATCH = 2, 90, 4, 4, 3, 2


def stitch(maps, b, g):
    """[B*g*g, C, h, w] -> [B, C, g*h, g*w], patch k at row k // g, column k % g."""
    n, c, h, w = maps.shape
    return maps.view(b, g, g, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b, c, g * h, g * w)


def heads(maps, params, b, g):
    mosaic = stitch(maps, b, g)
    logits = mosaic.mean(dim=(2, 3)) @ params["classifier.weight"].T + params["classifier.bias"]
    pooled = maps.mean(dim=(2, 3))
    patch = pooled @ params["patch_classifier.weight"].T + params["patch_classifier.bias"]
    return logits, patch.view(b, g * g, -1)


def plain(maps, params, classes, b, g):
    a = maps.detach().clone().requires_grad_(True)
    logits, _ = heads(a, params, b, g)
    score = logits.gather(1, torch.tensor(classes).view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, a)
    mosaic, gmosaic = stitch(a.detach(), b, g), stitch(grad, b, g)
    alpha = gmosaic.mean(dim=(2, 3), keepdim=True)
    return torch.relu((alpha * mosaic).sum(dim=1))


def patch_weighted(maps, params, classes, b, g):
    out = []
    for i in range(b):
        per_patch = []
        a_img = maps[i * g * g:(i + 1) * g * g]
        with torch.no_grad():
            _, p = heads(maps, params, b, g)
            conf = p.softmax(-1)[i, :, classes[i]]
        for k in range(g * g):
            a = maps.detach().clone().requires_grad_(True)
            _, p = heads(a, params, b, g)
            y = p.softmax(-1)[i, k, classes[i]]
            (grad,) = torch.autograd.grad(y, a)
            share = conf[k] / conf.sum()
            alpha = (share * grad[i * g * g + k]).mean(dim=(1, 2), keepdim=True)
            per_patch.append(torch.relu((alpha * a_img[k]).sum(dim=0)))
        stacked = torch.stack(per_patch).unsqueeze(1)
        out.append(stitch(stacked, 1, g)[0, 0])
    return torch.stack(out)


def r9(values):
    """Nine significant digits: exact enough for a 1e-4 check, a third of the file size."""
    return [float(f"{v:.9g}") for v in values]


def main():
    gen = torch.Generator().manual_seed(7)
    maps = torch.rand(BATCH * GRID * GRID, CHANNELS, H, W, generator=gen, dtype=torch.float64) * 2
    # The written (rounded) values are the oracle's input, so both sides start from the same A.
    maps = torch.tensor(r9(maps.flatten().tolist()), dtype=torch.float64).view_as(maps)
    params = {
        "classifier.weight": torch.randn(CLASSES, CHANNELS, generator=gen, dtype=torch.float64) * 0.3,
        "classifier.bias": torch.randn(CLASSES, generator=gen, dtype=torch.float64) * 0.1,
        "patch_classifier.weight": torch.randn(CLASSES, CHANNELS, generator=gen, dtype=torch.float64) * 0.3,
        "patch_classifier.bias": torch.randn(CLASSES, generator=gen, dtype=torch.float64) * 0.1,
    }
    params = {k: torch.tensor(r9(v.flatten().tolist()), dtype=torch.float64).view_as(v)
              for k, v in params.items()}
    cases = []
    for classes in ([0, 2], [1, 1]):
        cases.append({
            "classes": classes,
            "plain": r9(plain(maps, params, classes, BATCH, GRID).flatten().tolist()),
            "patch_weighted": r9(patch_weighted(maps, params, classes, BATCH, GRID).flatten().tolist()),
        })
    doc = {
        "generated_by": "scripts/gradcam_oracle.py",
        "torch": torch.__version__,
        "grid": GRID, "channels": CHANNELS, "h": H, "w": W, "classes": CLASSES, "batch": BATCH,
        "maps": r9(maps.flatten().tolist()),
        "params": {k: {"shape": list(v.shape), "values": r9(v.flatten().tolist())} for k, v in params.items()},
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
