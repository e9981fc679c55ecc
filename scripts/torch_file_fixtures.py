"""Writes the tiny PyTorch files that the `weights::torch_file` tests read.

    .venv-ref/bin/python scripts/torch_file_fixtures.py

Output goes to crates/myoscope/tests/fixtures/torch/:

  state_dict_zip.pt        a small state dict, torch.save default (zip) format
  state_dict_legacy.pth    the same, _use_new_zipfile_serialization=False
  checkpoint_zip.pt        {"epoch": 3, "state_dict": sd, "optimizer": {...}} (zip format)
  evil_zip.pt              a zip archive whose data.pkl calls os.system (never loaded here)
  evil_legacy.pth          a legacy-format file whose object pickle calls os.system
  evil_eval_zip.pt         a hand-written pickle calling builtins.eval
  compressed_zip.pt        state_dict_zip.pt re-zipped with deflate, which torch never writes
  truncated_zip.pt         state_dict_zip.pt cut short
  truncated_legacy.pth     state_dict_legacy.pth cut inside the storage data
  truncated_legacy_pickle.pth  state_dict_legacy.pth cut inside the object pickle
  expected.json            for every good file: each tensor's name, shape, dtype and values

The malicious files are written with plain pickle.dumps; nothing here ever unpickles them.
Values are stored twice in expected.json: as numbers (readable) and, for floating tensors, as
IEEE bit patterns, so the Rust tests compare exactly without relying on decimal parsing.
"""
import io
import json
import os
import pathlib
import pickle
import struct
import sys
import zipfile

import torch
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures/torch"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)


def state_dict():
    torch.manual_seed(0)
    net = Net()
    # One training-mode pass so the BatchNorm running stats and num_batches_tracked are not
    # their initial constants.
    x = torch.randn(2, 3, 5, 5)
    net.bn2(net.conv2(net.bn1(net.conv1(x))))
    sd = net.state_dict()
    sd["extra.float64"] = torch.randn(2, 3, dtype=torch.float64)
    # Saved with its transposed strides: the reader must honour them.
    sd["extra.transposed"] = torch.randn(3, 4).t()
    # Two views of one storage at different offsets (saved once, referenced twice).
    base = torch.randn(12)
    sd["extra.shared_a"] = base[2:6]
    sd["extra.shared_b"] = base[6:12].view(2, 3)
    sd["extra.float16"] = torch.randn(5).half()
    sd["extra.bfloat16"] = torch.randn(2, 2).bfloat16()
    sd["extra.int32"] = torch.tensor([1, -2, 2**31 - 1], dtype=torch.int32)
    sd["extra.uint8"] = torch.tensor([0, 7, 255], dtype=torch.uint8)
    sd["extra.bool"] = torch.tensor([True, False, True])
    sd["extra.empty"] = torch.zeros(0, 3)
    return sd


BITS = {
    torch.float64: (torch.int64, 64),
    torch.float32: (torch.int32, 32),
    torch.float16: (torch.int16, 16),
    torch.bfloat16: (torch.int16, 16),
}


def describe(sd):
    out = []
    for name, t in sd.items():
        t = t.contiguous()
        entry = {
            "name": name,
            "shape": list(t.shape),
            "dtype": str(t.dtype).removeprefix("torch."),
            "values": t.flatten().tolist(),
        }
        if t.dtype in BITS:
            int_type, width = BITS[t.dtype]
            signed = t.view(int_type).flatten().tolist()
            entry["bits"] = [v & ((1 << width) - 1) for v in signed]
        out.append(entry)
    return out


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def legacy_bytes(obj_pickle):
    """A legacy-format header (magic, protocol version, sys_info) followed by `obj_pickle`."""
    buf = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, buf, protocol=2)
    pickle.dump(1001, buf, protocol=2)
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    pickle.dump(sys_info, buf, protocol=2)
    buf.write(obj_pickle)
    pickle.dump([], buf, protocol=2)
    return buf.getvalue()


def zip_bytes(archive, data_pkl):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", data_pkl)
        z.writestr(f"{archive}/byteorder", "little")
        z.writestr(f"{archive}/version", "3\n")
    return buf.getvalue()


# PROTO 2, GLOBAL 'builtins eval', SHORT_BINUNICODE '1+1', TUPLE1, REDUCE, STOP
EVAL_PICKLE = b"\x80\x02cbuiltins\neval\n\x8c\x031+1\x85R."


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    sd = state_dict()
    torch.save(sd, OUT / "state_dict_zip.pt")
    torch.save(sd, OUT / "state_dict_legacy.pth", _use_new_zipfile_serialization=False)
    checkpoint = {
        "epoch": 3,
        "state_dict": sd,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]},
    }
    torch.save(checkpoint, OUT / "checkpoint_zip.pt")

    evil = pickle.dumps(Evil(), protocol=2)
    (OUT / "evil_zip.pt").write_bytes(zip_bytes("evil_zip", evil))
    (OUT / "evil_legacy.pth").write_bytes(legacy_bytes(evil))
    (OUT / "evil_eval_zip.pt").write_bytes(zip_bytes("evil_eval_zip", EVAL_PICKLE))

    with zipfile.ZipFile(OUT / "state_dict_zip.pt") as src, zipfile.ZipFile(
        OUT / "compressed_zip.pt", "w", compression=zipfile.ZIP_DEFLATED
    ) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))

    zipped = (OUT / "state_dict_zip.pt").read_bytes()
    (OUT / "truncated_zip.pt").write_bytes(zipped[: len(zipped) * 2 // 3])
    legacy = (OUT / "state_dict_legacy.pth").read_bytes()
    (OUT / "truncated_legacy.pth").write_bytes(legacy[:-100])
    (OUT / "truncated_legacy_pickle.pth").write_bytes(legacy[:600])

    described = describe(sd)
    expected = {
        "torch_version": torch.__version__,
        # Every good file holds the same state dict; "key" is where a checkpoint keeps it.
        "files": {
            "state_dict_zip.pt": {"key": None},
            "state_dict_legacy.pth": {"key": None},
            "checkpoint_zip.pt": {"key": "state_dict"},
        },
        "tensors": described,
    }
    (OUT / "expected.json").write_text(json.dumps(expected) + "\n")
    for p in sorted(OUT.iterdir()):
        size = p.stat().st_size
        assert size < 20_000, f"{p.name} is {size} bytes"
        print(f"{size:7d}  {p.name}")


if __name__ == "__main__":
    sys.exit(main())
