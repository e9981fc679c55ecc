"""PyTorch's side of `myoscope bench`: the same workloads, written the way a PyTorch user
would write them (eager mode, fp32, torchvision transforms and DataLoader).

Run by the suite as a worker that reads one JSON request per line on stdin and answers one
JSON object per line on stdout (see crates/myoscope/src/bench/worker.rs):

    {"cmd":"setup","case":{...}}  ->  {"ok":true,"items":16,"unit":"patches","versions":{...}}
    {"cmd":"run"}                 ->  {"ok":true,"seconds":0.41}
    {"cmd":"quit"}                ->  {"ok":true,"peak_rss_mib":812.5}

The case's `params` (sizes, thread count, input photos) come from myoscope, so both sides
measure the same thing. Needs torch, torchvision, numpy and pillow (bench/setup.sh).
"""
import json
import resource
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- DenseNet-121, aggregated
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
    """torchvision's DenseNet-121 `features` (+ the final ReLU), written out in plain torch."""

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
                self.transitions.append(
                    nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2))
                )
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
    """Kabeya et al.'s aggregated classifier: g×g patches through one trunk, mosaic, two heads."""

    def __init__(self, grid, classes):
        super().__init__()
        self.grid = grid
        self.features = DenseNet121Features()
        c = self.features.out_channels
        self.classifier = nn.Linear(c, classes)
        self.patch_classifier = nn.Linear(c, classes)

    def patch_maps(self, x):
        b, c, h, w = x.shape
        g = self.grid
        p = x.view(b, c, g, h // g, g, w // g).permute(0, 2, 4, 1, 3, 5).reshape(b * g * g, c, h // g, w // g)
        return self.features(p)

    def stitch(self, maps):
        n, cf, fh, fw = maps.shape
        g = self.grid
        b = n // (g * g)
        return maps.view(b, g, g, cf, fh, fw).permute(0, 3, 1, 4, 2, 5).reshape(b, cf, g * fh, g * fw)

    def heads(self, maps):
        g = self.grid
        logits = self.classifier(self.stitch(maps).mean((2, 3)))
        patch = self.patch_classifier(maps.mean((2, 3))).view(maps.shape[0] // (g * g), g * g, -1)
        return logits, patch

    def forward(self, x):
        return self.heads(self.patch_maps(x))


def aggregated_loss(logits, patch, labels):
    b, m, k = patch.shape
    return F.cross_entropy(logits, labels) + F.cross_entropy(patch.reshape(b * m, k), labels.repeat_interleave(m)) * m


# ---------------------------------------------------------------- UNet-ResNet34 with scSE
class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet34Encoder(nn.Module):
    """torchvision's ResNet-34 up to `depth` stages, returning the skip features (stride 2, 4, 8, …)."""

    def __init__(self, in_channels, depth):
        super().__init__()
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, c = [], 64
        for i, (n, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            blocks = [BasicBlock(c, width, 1 if i == 0 else 2)] + [BasicBlock(width, width, 1) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            c = width
        self.layers = nn.ModuleList(layers[: depth - 1])
        self.out_channels = [64, 64, 128, 256, 512][:depth]

    def forward(self, x):
        feats = [F.relu(self.bn1(self.conv1(x)))]
        x = F.max_pool2d(feats[0], 3, 2, 1)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class SCSE(nn.Module):
    def __init__(self, c, reduction=16):
        super().__init__()
        self.cse = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // reduction, 1), nn.ReLU(inplace=True), nn.Conv2d(c // reduction, c, 1), nn.Sigmoid())
        self.sse = nn.Sequential(nn.Conv2d(c, 1, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.cse(x) + x * self.sse(x)


def conv_bn_relu(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, c_in, c_skip, c_out):
        super().__init__()
        self.attention1 = SCSE(c_in + c_skip)
        self.conv1 = conv_bn_relu(c_in + c_skip, c_out)
        self.conv2 = conv_bn_relu(c_out, c_out)
        self.attention2 = SCSE(c_out)

    def forward(self, x, size, skip):
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = self.attention1(torch.cat([x, skip], 1))
        return self.attention2(self.conv2(self.conv1(x)))


class UNet(nn.Module):
    """The DEDL model as segmentation_models_pytorch builds it: Unet('resnet34', encoder_depth=3,
    decoder_channels=(256, 128, 64), decoder_attention_type='scse', in_channels=1, classes=2)."""

    def __init__(self, in_channels=1, classes=2, depth=3, decoder=(256, 128, 64)):
        super().__init__()
        self.encoder = ResNet34Encoder(in_channels, depth)
        enc = self.encoder.out_channels[::-1]
        ins = [enc[0]] + list(decoder[:-1])
        skips = list(enc[1:]) + [0]
        self.blocks = nn.ModuleList([DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder)])
        self.head = nn.Conv2d(decoder[-1], classes, 3, padding=1)

    def forward(self, x):
        feats = self.encoder(x)
        y = feats[-1]
        for i, block in enumerate(self.blocks):
            skip = feats[-2 - i] if i + 1 < len(feats) else None
            size = skip.shape[-2:] if skip is not None else x.shape[-2:]
            y = block(y, size, skip)
        return self.head(y)


# ---------------------------------------------------------------- tiling (as myoscope's)
def axis_origins(length, tile, overlap):
    if length <= tile:
        return [-((tile - length) // 2)]
    margin = overlap // 2
    stride = tile - overlap
    span = length + 2 * margin - tile
    if span <= 0:
        return [-((tile - length) // 2)]
    steps = (span + stride - 1) // stride
    return [-margin + (i * span + steps // 2) // steps for i in range(steps + 1)]


def reflect_index(i, n):
    if 0 <= i < n:
        return i
    if n == 1:
        return 0
    period = 2 * (n - 1)
    m = i % period
    return m if m < n else period - m


def ramp_window(tile, overlap):
    r = max(overlap, 1) + 1.0
    return torch.tensor([min((i + 1) / r, (tile - i) / r, 1.0) for i in range(tile)], dtype=torch.float32)


def tiled_probabilities(model, image, tile, overlap, batch):
    """image [C, H, W] → class probabilities [K, H, W], blended as myoscope's Stitcher does."""
    c, h, w = image.shape
    ys, xs = axis_origins(h, tile, overlap), axis_origins(w, tile, overlap)
    tiles = [(y, x) for y in ys for x in xs]
    window = ramp_window(tile, overlap)
    window2 = window[:, None] * window[None, :]
    total = None
    weight = torch.zeros(h, w)
    for start in range(0, len(tiles), batch):
        chunk = tiles[start : start + batch]
        xb = []
        for y, x in chunk:
            rows = torch.tensor([reflect_index(y + i, h) for i in range(tile)])
            cols = torch.tensor([reflect_index(x + j, w) for j in range(tile)])
            xb.append(image[:, rows][:, :, cols])
        with torch.no_grad():
            probs = model(torch.stack(xb)).softmax(1)
        if total is None:
            total = torch.zeros(probs.shape[1], h, w)
        for (y, x), p in zip(chunk, probs):
            y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + tile, h), min(x + tile, w)
            wt = window2[y0 - y : y1 - y, x0 - x : x1 - x]
            weight[y0:y1, x0:x1] += wt
            total[:, y0:y1, x0:x1] += wt * p[:, y0 - y : y1 - y, x0 - x : x1 - x]
    return total / weight, len(tiles)


# ---------------------------------------------------------------- images
def crop_box(w, h, crop):
    side = min(w, h)
    slack = max(w, h) - side
    offset = {"left": 0, "right": slack, "centre": slack // 2}[crop]
    return (offset, 0, side) if w >= h else (0, offset, side)


def load_square(path, crop, size):
    from PIL import Image

    img = Image.open(path).convert("RGB")
    x, y, side = crop_box(img.width, img.height, crop)
    img = img.crop((x, y, x + side, y + side))
    return img.resize((size, size), Image.BILINEAR), side


class Rotate90:
    """A random quarter turn (0, 90, 180 or 270 degrees), like myoscope's augmentation."""

    def __call__(self, img):
        from PIL import Image

        k = int(torch.randint(0, 4, ()).item())
        return img if k == 0 else img.transpose([None, Image.ROTATE_90, Image.ROTATE_180, Image.ROTATE_270][k])


class PhotoSquares(torch.utils.data.Dataset):
    def __init__(self, photos, n, size):
        import torchvision.transforms as T

        self.items = [(photos[i % len(photos)], crop, i % 2) for i in range(n) for crop in ("left", "right")]
        self.size = size
        self.transform = T.Compose(
            [
                T.RandomHorizontalFlip(),
                T.RandomVerticalFlip(),
                Rotate90(),
                T.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
                T.ToTensor(),
                T.Normalize(MEAN, STD),
            ]
        )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, crop, label = self.items[i]
        square, _ = load_square(path, crop, self.size)
        return self.transform(square), label


# ---------------------------------------------------------------- workloads
class ClassifierInference:
    unit = "patches"

    def __init__(self, p):
        torch.manual_seed(0)
        self.model = Aggregated(p["grid"], 2).eval()
        self.x = torch.randn(p["batch"], 3, p["size"], p["size"])
        self.items = p["batch"] * p["grid"] ** 2

    def run(self):
        with torch.no_grad():
            logits, _ = self.model(self.x)
            logits.softmax(-1)


class ClassifierTraining:
    unit = "patches"

    def __init__(self, p):
        torch.manual_seed(0)
        self.model = Aggregated(p["grid"], 2).train()
        self.opt = torch.optim.RAdam(self.model.parameters(), lr=1e-4)
        self.x = torch.randn(p["batch"], 3, p["size"], p["size"])
        self.labels = torch.zeros(p["batch"], dtype=torch.long)
        self.items = p["batch"] * p["grid"] ** 2

    def run(self):
        self.opt.zero_grad()
        logits, patch = self.model(self.x)
        aggregated_loss(logits, patch, self.labels).backward()
        self.opt.step()


class SegmentationTraining:
    unit = "tiles"

    def __init__(self, p):
        torch.manual_seed(0)
        self.model = UNet().train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=3.6e-4, weight_decay=1e-5)
        b, t = p["seg_batch"], p["seg_tile"]
        self.x = torch.randn(b, 1, t, t)
        self.masks = (torch.rand(b, t, t) < 0.2).long()
        self.weights = torch.tensor([0.2, 0.8])
        self.items = b

    def run(self):
        self.opt.zero_grad()
        loss = F.cross_entropy(self.model(self.x), self.masks, weight=self.weights)
        loss.backward()
        self.opt.step()


class SegmentationTiled:
    unit = "tiles"

    def __init__(self, p):
        torch.manual_seed(0)
        self.model = UNet().eval()
        torch.manual_seed(1)
        self.page = torch.rand(1, p["page_height"], p["page_width"])
        self.p = p
        self.items = len(axis_origins(p["page_height"], p["seg_tile"], p["overlap"])) * len(
            axis_origins(p["page_width"], p["seg_tile"], p["overlap"])
        )

    def run(self):
        p = self.p
        probs, _ = tiled_probabilities(self.model, self.page, p["seg_tile"], p["overlap"], p["tile_batch"])
        probs.argmax(0).to(torch.uint8)


class Pipeline:
    unit = "images"

    def __init__(self, p):
        self.data = PhotoSquares(p["photos"], p["pipeline_photos"], p["size"])
        self.p = p
        self.items = len(self.data)

    def run(self):
        loader = torch.utils.data.DataLoader(
            self.data, batch_size=self.p["pipeline_batch"], shuffle=True, num_workers=self.p["pipeline_workers"]
        )
        seen = 0
        for images, labels in loader:
            seen += images.shape[0]
        assert seen == self.items


class SlideDiagnosis:
    """3 photos → centre square → 640², two steps of 5-model ensembles, slide means,
    patch-weighted Grad-CAM (autograd through the heads) for the call and the subtype."""

    unit = "slides"

    def __init__(self, p):
        def ensemble(classes, seed):
            models = []
            for k in range(p["ensemble"]):
                torch.manual_seed(seed + k)
                models.append(Aggregated(p["grid"], classes).eval())
            return models

        self.step1 = ensemble(p["step1_classes"], 100)
        self.step2 = ensemble(p["step2_classes"], 200)
        self.photos = p["photos"][:3]
        self.size = p["size"]
        self.items = 1
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def batch(self):
        xs, side = [], None
        for path in self.photos:
            square, side = load_square(path, "centre", self.size)
            t = torch.from_numpy(np.asarray(square, dtype=np.float32) / 255.0).permute(2, 0, 1)
            xs.append((t - self.mean) / self.std)
        return torch.stack(xs), side

    @staticmethod
    def grad_cam(model, maps, cls):
        a = maps.detach().requires_grad_(True)
        _, patch = model.heads(a)
        conf = patch.softmax(-1)[..., cls]  # [B, g²]
        share = (conf / conf.sum(1, keepdim=True)).detach()
        (grad,) = torch.autograd.grad(conf.sum(), a)
        alpha = grad.mean((2, 3), keepdim=True) * share.reshape(-1, 1, 1, 1)
        cam = F.relu((alpha * a.detach()).sum(1, keepdim=True))
        return model.stitch(cam).squeeze(1)

    def step(self, models, x):
        maps, probs = [], []
        with torch.no_grad():
            for m in models:
                a = m.patch_maps(x)
                logits, _ = m.heads(a)
                maps.append(a)
                probs.append(logits.softmax(-1))
        slide = torch.stack(probs).mean(0).mean(0)
        cls = (0 if slide[0] >= 0.5 else 1) if slide.numel() == 2 else int(slide.argmax())
        heat = []
        for m, a in zip(models, maps):
            h = self.grad_cam(m, a, cls)
            heat.append(h / h.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1))
        return slide, cls, torch.stack(heat).mean(0)

    def run(self):
        x, side = self.batch()
        _, _, call_maps = self.step(self.step1, x)
        _, _, subtype_maps = self.step(self.step2, x)
        for maps in (call_maps, subtype_maps):
            F.interpolate(maps.unsqueeze(1), size=(side, side), mode="bilinear", align_corners=False)


WORKLOADS = {
    "classifier-inference": ClassifierInference,
    "classifier-training": ClassifierTraining,
    "segmentation-training": SegmentationTraining,
    "segmentation-tiled": SegmentationTiled,
    "pipeline": Pipeline,
    "slide": SlideDiagnosis,
}


# ---------------------------------------------------------------- worker
def vm_hwm_mib(pid="self"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mib(case):
    """This process's VmHWM; for the pipeline, plus its DataLoader workers (each counted at the
    largest worker's peak, shared pages included: an upper bound)."""
    own = vm_hwm_mib()
    if case["workload"] == "pipeline":
        child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        own += case["params"]["pipeline_workers"] * child_kib / 1024
    return own


def versions():
    import PIL
    import torchvision

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "threads": torch.get_num_threads(),
    }


def main():
    out = sys.stdout
    work, case = None, None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "setup":
                case = req["case"]
                p = case["params"]
                if p.get("arch", "densenet121") != "densenet121":
                    raise ValueError(f"the PyTorch side implements densenet121 only, not {p['arch']}")
                if p.get("device", "cpu") != "cpu":
                    raise ValueError("the PyTorch side runs on the CPU only")
                if p["threads"] > 0:
                    torch.set_num_threads(p["threads"])
                work = WORKLOADS[case["workload"]](p)
                for _ in range(case["warmup"]):
                    work.run()
                reply = {"ok": True, "items": work.items, "unit": work.unit, "versions": versions()}
            elif cmd == "run":
                t = time.perf_counter()
                work.run()
                reply = {"ok": True, "seconds": time.perf_counter() - t}
            elif cmd == "quit":
                out.write(json.dumps({"ok": True, "peak_rss_mib": peak_rss_mib(case) if case else vm_hwm_mib()}) + "\n")
                out.flush()
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as e:  # the runner reports it and goes on without PyTorch
            traceback.print_exc(file=sys.stderr)
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    if "--worker" not in sys.argv[1:]:
        sys.exit("usage: torch_cases.py --worker  (run by `myoscope bench`; see the module docstring)")
    main()
