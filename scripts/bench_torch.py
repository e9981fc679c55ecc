"""PyTorch reference for `myoscope bench`: the same aggregated DenseNet-121 (Kabeya et al.),
the same input, the same RAdam step, timed the same way. Prints one JSON object.

DenseNet-121 is written out here in plain torch because the registries we may use carry
torch but not torchvision; the layout is torchvision's (checked by the parameter count).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class DenseLayer(nn.Module):
    def __init__(self, c_in, growth, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, feats):
        x = torch.cat(feats, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


class DenseNet121Features(nn.Module):
    def __init__(self, growth=32, blocks=(6, 12, 24, 16), init=64, bn_size=4):
        super().__init__()
        self.conv0 = nn.Conv2d(3, init, 7, stride=2, padding=3, bias=False)
        self.norm0 = nn.BatchNorm2d(init)
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        c = init
        for i, n in enumerate(blocks):
            self.blocks.append(nn.ModuleList([DenseLayer(c + j * growth, growth, bn_size) for j in range(n)]))
            c += n * growth
            if i + 1 < len(blocks):
                self.transitions.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)))
                c //= 2
        self.norm5 = nn.BatchNorm2d(c)
        self.out_channels = c

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.norm0(self.conv0(x))), 3, 2, 1)
        for i, block in enumerate(self.blocks):
            feats = [x]
            for layer in block:
                feats.append(layer(feats))
            x = torch.cat(feats, 1)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        return F.relu(self.norm5(x))


class Aggregated(nn.Module):
    def __init__(self, grid, classes):
        super().__init__()
        self.grid = grid
        self.features = DenseNet121Features()
        c = self.features.out_channels
        self.classifier = nn.Linear(c, classes)
        self.patch_classifier = nn.Linear(c, classes)

    def forward(self, x):
        b, c, h, w = x.shape
        g = self.grid
        p = x.view(b, c, g, h // g, g, w // g).permute(0, 2, 4, 1, 3, 5).reshape(b * g * g, c, h // g, w // g)
        maps = self.features(p)
        n, cf, fh, fw = maps.shape
        mosaic = maps.view(b, g, g, cf, fh, fw).permute(0, 3, 1, 4, 2, 5).reshape(b, cf, g * fh, g * fw)
        logits = self.classifier(mosaic.mean((2, 3)))
        patch = self.patch_classifier(maps.mean((2, 3))).view(b, g * g, -1)
        return logits, patch


def loss_fn(logits, patch, labels):
    b, m, k = patch.shape
    return F.cross_entropy(logits, labels) + F.cross_entropy(patch.reshape(b * m, k), labels.repeat_interleave(m)) * m


def peak_rss_mib():
    """VmHWM of this process. (getrusage's maxrss would be wrong here: Linux carries it
    across the exec from the parent that launched us.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn, warmup, iters, sync):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = Aggregated(a.grid, 2).to(dev)
    params = sum(p.numel() for p in model.features.parameters())
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev)
    labels = torch.zeros(a.batch, dtype=torch.long, device=dev)
    opt = torch.optim.RAdam(model.parameters(), lr=1e-4)

    model.eval()

    def forward():
        with torch.no_grad():
            model(x)

    fwd = timed(forward, a.warmup, a.iters, sync)
    rss_forward = peak_rss_mib()
    model.train()

    def step():
        opt.zero_grad()
        logits, patch = model(x)
        loss_fn(logits, patch, labels).backward()
        opt.step()

    train = timed(step, a.warmup, a.iters, sync)
    rss_train = peak_rss_mib()
    print(json.dumps({
        "engine": f"pytorch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "trunk_parameters": params,
        "forward_s": fwd,
        "train_step_s": train,
        "peak_rss_after_forward_mib": rss_forward,
        "peak_rss_after_train_mib": rss_train,
    }))


if __name__ == "__main__":
    main()
