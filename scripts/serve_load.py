#!/usr/bin/env python3
"""Load run for `myoscope serve` (not a test): N concurrent diagnose requests and a PNG bomb.

Start a server first, with a small queue so that overload shows, for example
  target/release/myoscope serve --model demo-out --port 8470 --queue 4 &
then
  python3 scripts/serve_load.py --url http://127.0.0.1:8470 --pid $! --photo demo-out/data/images/<a photo>.png

It prints
  - latency percentiles (p50/p90/p99) of the answered (200) requests and of all requests,
  - the count of each HTTP status (only 200 and 503 are acceptable: a full queue must answer
    503 with Retry-After, never time out, fail or crash),
  - the server's peak resident memory (VmHWM from /proc/PID/status) before and after,
  - a 20,000 x 20,000 RGB PNG bomb (1.2 GB of pixels deflated to about 1.2 MB, generated
    here), which must be refused quickly (413) without the server's peak memory growing.
Exit status 1 when any of these fails. Standard library only.
"""
import argparse
import http.client
import json
import struct
import sys
import threading
import time
import urllib.parse
import zlib


def multipart(files, fields=()):
    boundary = "myoscope-load-boundary-51c3"
    out = bytearray()
    for name, value in fields:
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
    for fname, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"{fname}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


def post(url, path, body, content_type, headers=None, timeout=600):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = {"Content-Type": content_type, "Content-Length": str(len(body))}
    h.update(headers or {})
    t0 = time.perf_counter()
    try:
        conn.request("POST", path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        # Header names are case-insensitive; keep them lower-case.
        return r.status, time.perf_counter() - t0, data, {k.lower(): v for k, v in r.getheaders()}
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        return f"error: {e}", time.perf_counter() - t0, b"", {}
    finally:
        conn.close()


def vm(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0  # MiB
    except OSError:
        return None
    return None


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side):
    """A valid side x side 8-bit RGB PNG whose pixels are all zero, deflated row by row."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)  # filter byte 0, then the row's samples
    idat = bytearray()
    for _ in range(side):
        idat += comp.compress(row)
    idat += comp.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", bytes(idat)) + png_chunk(b"IEND", b"")


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8470")
    ap.add_argument("--pid", type=int, help="the server's process id, for its peak memory")
    ap.add_argument("--photo", required=True, help="a demo photo (PNG/JPEG) to diagnose")
    ap.add_argument("--photos-per-request", type=int, default=1)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--token", help="bearer token, if the server has one")
    ap.add_argument("--bomb-side", type=int, default=20000)
    a = ap.parse_args()
    headers = {"Authorization": f"Bearer {a.token}"} if a.token else {}
    ok = True

    with open(a.photo, "rb") as f:
        photo = f.read()
    ct, body = multipart([(f"p{i}.png", photo) for i in range(a.photos_per_request)], [("slide", "load")])

    # Warm up once so the first request's one-off costs are not counted as load.
    status, secs, data, _ = post(a.url, "/v1/diagnose", body, ct, headers)
    if status != 200:
        print(f"warm-up request failed: {status} {data[:300]!r}")
        return 1
    print(f"warm-up diagnose: {secs:.3f} s")
    hwm0 = vm(a.pid, "VmHWM") if a.pid else None

    # The bomb: refused from its header, before any pixel is inflated.
    t0 = time.perf_counter()
    bomb = png_bomb(a.bomb_side)
    print(f"PNG bomb {a.bomb_side}x{a.bomb_side} RGB: {len(bomb) / 1e6:.2f} MB on the wire, "
          f"{3 * a.bomb_side ** 2 / 1e9:.2f} GB of pixels (generated in {time.perf_counter() - t0:.1f} s)")
    ctb, bbody = multipart([("bomb.png", bomb)])
    status, secs, data, _ = post(a.url, "/v1/diagnose", bbody, ctb, headers)
    hwm1 = vm(a.pid, "VmHWM") if a.pid else None
    try:
        code = json.loads(data)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "?"
    grew = (hwm1 - hwm0) if hwm0 is not None and hwm1 is not None else None
    print(f"PNG bomb answer: {status} {code} in {secs * 1000:.0f} ms; server peak RSS "
          + (f"{hwm0:.0f} -> {hwm1:.0f} MiB (+{grew:.1f})" if grew is not None else "not measured (no --pid)"))
    if status != 413 or code != "too_many_pixels" or secs > 5 or (grew is not None and grew > 64):
        print("FAIL: the bomb must be refused with 413 too_many_pixels, fast, without a memory peak")
        ok = False

    # N concurrent diagnose requests, all released at once.
    results = [None] * a.requests
    barrier = threading.Barrier(a.requests)

    def one(i):
        barrier.wait()
        status, secs, data, h = post(a.url, "/v1/diagnose", body, ct, headers)
        results[i] = (status, secs, h.get("retry-after"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.requests)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    counts = {}
    for s, _, _ in results:
        counts[s] = counts.get(s, 0) + 1
    ok_lat = [secs for s, secs, _ in results if s == 200]
    all_lat = [secs for _, secs, _ in results]
    busy = [r for r in results if r[0] == 503]
    print(f"{a.requests} concurrent diagnose requests ({a.photos_per_request} photo(s) each) in {wall:.2f} s")
    print("status counts: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str)))
    print("latency of 200s: p50 {:.3f} s, p90 {:.3f} s, p99 {:.3f} s".format(
        percentile(ok_lat, 50), percentile(ok_lat, 90), percentile(ok_lat, 99)))
    print("latency of all:  p50 {:.3f} s, p90 {:.3f} s, p99 {:.3f} s".format(
        percentile(all_lat, 50), percentile(all_lat, 90), percentile(all_lat, 99)))
    if busy:
        print(f"503 answers carried Retry-After: {sorted(set(r[2] for r in busy), key=str)}")
    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("GET", "/healthz")
    health = json.loads(conn.getresponse().read())
    conn.close()
    print(f"server's mean time per case (moving average): {health['queue']['mean_seconds_per_case']:.3f} s; "
          f"workers {health['queue']['workers']}, places {health['queue']['capacity']}")
    print("machine load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in __import__("os").getloadavg()))
    if a.pid:
        print(f"server peak RSS (VmHWM): {vm(a.pid, 'VmHWM'):.0f} MiB; now (VmRSS) {vm(a.pid, 'VmRSS'):.0f} MiB")
    if set(counts) - {200, 503}:
        print("FAIL: statuses other than 200 and 503")
        ok = False
    if any(r[2] is None for r in busy):
        print("FAIL: a 503 without Retry-After")
        ok = False
    if not ok_lat:
        print("FAIL: no request was answered")
        ok = False
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
