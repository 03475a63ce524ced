"""Photo pipeline benchmark: one 12 MP phone photo to every channel rendition and web thumbnail.

Run: ``python -m bench.media [--rounds 3] [--iterations 6]``. Compares, in the same run and on one pinned core:

- **pipeline**: ``agrimarket.media.pipeline.process`` (decode at reduced DCT scale, renditions from that);
- **naive**: the obvious way: one full-size decode, normalise at full size, then resize each output (the stored
  photo and every rendition) from the full image.

Both make the same outputs (same sizes, encoders and quality search; checked). Each method runs in fresh
subprocesses pinned to one core, in alternating rounds; time is the median over all iterations (after a warm-up per
process), with the best one beside it; peak memory is the resident memory the first photo adds (Linux ``VmHWM``
after resetting it, else ``ru_maxrss`` growth); ``tracemalloc`` adds the Python-heap peak (Pillow's pixel buffers
are not on the Python heap). The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypedDict

from PIL import Image, ImageCms, ImageDraw, ImageFilter, ImageOps

from agrimarket.media import pipeline
from agrimarket.media.rules import DEFAULT_RULES, ImageRule
from bench._common import status_kib

RULES: list[ImageRule] = list(DEFAULT_RULES.values())
# 12 MP as iPhones and Pixels write it (Samsung: 4000 × 3000).
WIDTH, HEIGHT = 4032, 3024


def make_phone_photo(width: int, height: int, seed: int = 7) -> bytes:
    """A photo-like 12 MP JPEG as a phone writes it: soft gradients and rounded shapes (produce on a table),
    sensor noise, JPEG q92, stored on its side with EXIF orientation 6, GPS tags and an sRGB ICC profile.

    Flat colour would compress ~50× better than a real photo and make decoding look free; this one lands at
    ~3 MB, like a real 12 MP phone photo.
    """
    rng = random.Random(seed)
    horizontal = Image.linear_gradient("L").rotate(90).resize((width, height))
    vertical = Image.linear_gradient("L").resize((width, height))
    radial = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", (horizontal, radial, ImageOps.invert(vertical)))
    draw = ImageDraw.Draw(image)
    for _ in range(80):
        x, y, size = rng.randrange(width), rng.randrange(height), rng.randrange(80, 700)
        colour = (rng.randrange(120, 256), rng.randrange(40, 220), rng.randrange(0, 90))
        draw.ellipse((x, y, x + size, y + int(size * rng.uniform(0.6, 1.0))), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(4))
    noise = Image.effect_noise((width, height), 48)
    image = Image.blend(image, Image.merge("RGB", (noise, noise, noise)), 0.1)

    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    exif[0x010F] = "Phone"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (11.0, 32.0, 0.0), 3: "E", 4: (106.0, 53.0, 0.0)})  # Bình Phước
    buffer = io.BytesIO()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.save(buffer, "JPEG", quality=92, exif=exif, icc_profile=icc)
    return buffer.getvalue()


def naive_process(data: bytes, rules: Sequence[ImageRule]) -> pipeline.Processed:
    """Full decode, full-size normalisation, each rendition resized from the full image."""
    opened = Image.open(io.BytesIO(data))
    opened.load()
    image = pipeline.normalise_sync(opened)
    ours = pipeline.working_size_needed(image.size, rules, pipeline.DEFAULT_LIMITS)
    master_size = _master_size(image.size, ours)
    master = pipeline.encode_master_sync(image.resize(master_size, pipeline.RESAMPLE))
    renditions = []
    for rule in rules:
        geometry = pipeline.plan(master_size, rule)  # the same output sizes as the pipeline's
        content = image.resize(geometry.content, pipeline.RESAMPLE)
        encoded = pipeline.render_sync(content, [rule])[0]
        renditions.append((rule, encoded))
    return pipeline.Processed(master, renditions, pipeline.SourceFormat.jpeg)


def _master_size(full: tuple[int, int], needed: tuple[int, int]) -> tuple[int, int]:
    """The size the pipeline's stored photo has (the coarsest 1/2^n JPEG scale covering ``needed``)."""
    for scale in (8, 4, 2, 1):
        size = (-(-full[0] // scale), -(-full[1] // scale))
        if size[0] >= needed[0] and size[1] >= needed[1]:
            return size
    return full


METHODS: dict[str, Callable[[bytes, Sequence[ImageRule]], pipeline.Processed]] = {
    "pipeline": pipeline.process,
    "naive": naive_process,
}


class WorkerReport(TypedDict):
    method: str
    core: int | None
    ms: list[float]
    cpu_ms: list[float]
    peak_mb: float
    python_heap_peak_mb: float
    outputs: dict[str, list[int | None]]


def _pin_to_one_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def _peak_mb_of(run: Callable[[], object]) -> float:
    """Resident memory one call adds at its peak, over the process before it.

    Linux: reset the peak (``/proc/self/clear_refs``), then read ``VmHWM``. Elsewhere: ``ru_maxrss`` growth,
    which is only right when this run sets the process's peak.
    """
    gc.collect()
    before = status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        before = None
    if before is None:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run()
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
        return grown / (1024 * 1024) if sys.platform == "darwin" else grown / 1024
    run()
    return ((status_kib("VmHWM") or before) - before) / 1024


def worker(method: str, path: Path, iterations: int) -> WorkerReport:
    """One method, in this (fresh) process: time per photo, peak memory, and what it produced."""
    core = _pin_to_one_core()
    run = METHODS[method]
    data = path.read_bytes()
    # Peak on the first photo of a fresh process: later runs reuse memory the allocator kept, and would
    # understate it.
    peak_mb = _peak_mb_of(lambda: run(data, RULES))
    result = run(data, RULES)
    times, cpu_times = [], []
    for _ in range(iterations):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run(data, RULES)
        times.append((time.perf_counter() - started) * 1000)
        cpu_times.append((time.process_time() - cpu_started) * 1000)
    tracemalloc.start()
    run(data, RULES)
    python_heap_peak = tracemalloc.get_traced_memory()[1] / (1024 * 1024)
    tracemalloc.stop()
    outputs: dict[str, list[int | None]] = {
        "master": [result.master.width, result.master.height, len(result.master.data), result.master.quality]
    }
    for rule, encoded in result.renditions:
        outputs[rule.purpose] = [encoded.width, encoded.height, len(encoded.data), encoded.quality]
    return WorkerReport(
        method=method,
        core=core,
        ms=times,
        cpu_ms=cpu_times,
        peak_mb=peak_mb,
        python_heap_peak_mb=python_heap_peak,
        outputs=outputs,
    )


def _run_worker(method: str, path: Path, iterations: int) -> WorkerReport:
    """Each method in a fresh interpreter, so neither inherits the other's memory or caches."""
    command = [sys.executable, "-m", "bench.media", "--worker", method, "--input", str(path)]
    command += ["--iterations", str(iterations)]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
    report: WorkerReport = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both methods")
    parser.add_argument("--iterations", type=int, default=6, help="photos per method per round")
    parser.add_argument("--worker", choices=sorted(METHODS))
    parser.add_argument("--input", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.input, args.iterations)))
        return

    photo = make_phone_photo(WIDTH, HEIGHT)
    reports: dict[str, list[WorkerReport]] = {"pipeline": [], "naive": []}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "phone.jpg"
        path.write_bytes(photo)
        with Image.open(path) as probe:
            print(f"photo: {probe.size[0]}×{probe.size[1]} JPEG q92, {len(photo) / 1e6:.2f} MB, EXIF orientation 6")
        print(f"renditions: {', '.join(rule.purpose for rule in RULES)} (+ the stored photo)")
        # Alternate the methods, so a change in the machine's load hits both alike.
        for _ in range(args.rounds):
            for method, runs in reports.items():
                runs.append(_run_worker(method, path, args.iterations))

    first = {method: runs[0] for method, runs in reports.items()}
    sizes = {name: [report["outputs"][p][:2] for p in report["outputs"]] for name, report in first.items()}
    assert sizes["pipeline"] == sizes["naive"], f"the two methods made different sizes: {sizes}"
    facts = {}
    for method, runs in reports.items():
        ms = [t for run in runs for t in run["ms"]]
        cpu = [t for run in runs for t in run["cpu_ms"]]
        facts[method] = {
            "ms": statistics.median(ms),
            "ms_min": min(ms),
            "cpu_ms": statistics.median(cpu),
            "peak_mb": max(run["peak_mb"] for run in runs),
            "heap_mb": max(run["python_heap_peak_mb"] for run in runs),
        }
        print(
            f"{method:>8}: {facts[method]['ms']:7.1f} ms/photo (median of {len(ms)}, min {min(ms):.1f}; "
            f"CPU {facts[method]['cpu_ms']:.1f}), peak memory +{facts[method]['peak_mb']:.1f} MB RSS, "
            f"Python heap peak {facts[method]['heap_mb']:.1f} MB, pinned to core {runs[0]['core']}"
        )
    print("made (width, height, bytes, quality):")
    for purpose, made in first["pipeline"]["outputs"].items():
        print(f"  {purpose:>12}: {made}")
    ours, naive = facts["pipeline"], facts["naive"]
    summary = {
        "ms_per_photo": round(ours["ms"], 1),
        "naive_ms_per_photo": round(naive["ms"], 1),
        "speedup": round(naive["ms"] / ours["ms"], 2),
        "best_ms_per_photo": round(ours["ms_min"], 1),
        "naive_best_ms_per_photo": round(naive["ms_min"], 1),
        "cpu_ms_per_photo": round(ours["cpu_ms"], 1),
        "naive_cpu_ms_per_photo": round(naive["cpu_ms"], 1),
        "peak_mb": round(ours["peak_mb"], 1),
        "naive_peak_mb": round(naive["peak_mb"], 1),
        "python_heap_peak_mb": round(ours["heap_mb"], 1),
        "naive_python_heap_peak_mb": round(naive["heap_mb"], 1),
        "photo": f"{WIDTH}x{HEIGHT} JPEG, {len(photo)} bytes",
        "outputs": len(RULES) + 1,
        # Other work on the machine inflates every figure here; the load says how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
