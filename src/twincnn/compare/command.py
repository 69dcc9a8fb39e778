"""`twincnn compare`: options -> runs -> table, results.json, report.md, figures."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

from .. import __version__, backends, data
from ..allocator import keep_freed_memory
from ..errors import UserError
from ..floor import measure_floor
from ..spec import load_spec
from .output import atomic_directory, refuse_nonempty, report_markdown, side_by_side, write_json
from .protocol import Config, train_one
from .summary import aggregate, difference

QUICK_TRAIN, QUICK_TEST, QUICK_EPOCHS = 12_000, 2_000, 2


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def run(args) -> int:
    frameworks = backends.parse_list(args.frameworks)
    for name in frameworks:  # fail now, with the install hint or the device problem, not after minutes
        backends.load(name).resolve_device(args.device)
    spec = load_spec(args.spec)
    dataset = data.load(args.data)
    epochs = QUICK_EPOCHS if args.quick and args.epochs == 5 else args.epochs
    if args.quick:
        dataset = dataset.subset(QUICK_TRAIN, QUICK_TEST)
    if args.protocol == "notebook" and args.device == "cuda":
        raise UserError("--protocol notebook reproduces a CPU run; use --device cpu")
    threads = args.threads or os.cpu_count()
    seeds = [args.seed + i for i in range(args.repeats)]
    config = Config(protocol=args.protocol, variant=args.variant, epochs=epochs, batch_size=args.batch_size,
                    lr=args.lr, threads=threads, device=args.device, progress=not args.no_progress)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results") / stamp
    refuse_nonempty(out)  # now, not after minutes of training

    allocator = keep_freed_memory()  # before any training: every run gets the same heap behaviour
    n_train, n_test = len(dataset.y_train), len(dataset.y_test)
    floor = None if args.no_floor else measure_floor(spec, n_train, epochs)
    log = print
    log(f"twincnn compare: {args.protocol} protocol, {config.variant if args.protocol == 'fair' else 'notebook'} "
        f"code, {epochs} epoch(s), batch {args.batch_size}, {n_train:,}/{n_test:,} images, seeds {seeds}, "
        f"{threads} threads" + (" [QUICK DEMO]" if args.quick else ""))
    if floor:
        log(f"hardware floor: {floor['train_flops'] / 1e12:.2f} TFLOP / {floor['matmul_gflops']:.0f} GFLOP/s "
            f"= {floor['floor_seconds']:.1f} s")

    runs = {name: [] for name in frameworks}
    for i, seed in enumerate(seeds):
        order = frameworks if i % 2 == 0 else frameworks[::-1]  # alternate who goes first across repeats
        for name in order:
            runs[name].append(train_one(name, spec, dataset, config, seed))

    results = {name: aggregate(runs[name], dataset.y_test, floor and floor["floor_seconds"])
               for name in frameworks}
    diff = difference(results, runs)
    doc = {
        "twincnn": __version__,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": {"protocol": args.protocol, "variant": config.variant if args.protocol == "fair" else "notebook",
                   "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr, "seeds": seeds,
                   "repeats": args.repeats, "threads": threads, "device": args.device, "quick": args.quick,
                   "spec": spec.to_dict(), "parameters": spec.total_params},
        "environment": {
            "python": platform.python_version(), "platform": platform.platform(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "allocator": allocator, "git_commit": git_commit(), "argv": sys.argv[1:],
            "frameworks": {name: backends.load(name).environment() for name in frameworks},
        },
        "data": {"source": dataset.source, "sha256": dataset.sha256, "train_images": n_train,
                 "test_images": n_test},
        "floor": floor,
        "frameworks": results,
        "difference": diff,
    }
    log("")
    log(side_by_side(results, diff))
    with atomic_directory(out) as tmp:
        from .plots import draw_all

        title = f"{args.protocol} protocol, {n_train:,} images" + (" (quick demo)" if args.quick else "")
        doc["figures"] = draw_all(results, tmp, title)
        (tmp / "report.md").write_text(report_markdown(doc))
        write_json(tmp / "results.json", doc)  # last: its presence marks a complete run
    log(f"\nwrote {out}/results.json, report.md, {', '.join(doc['figures'])}")
    return 0
