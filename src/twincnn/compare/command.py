"""`twincnn compare`: options -> interleaved worker runs -> verdicts, table, results directory."""

from __future__ import annotations

import datetime as dt
import math
import platform
import signal
import sys
import time
from pathlib import Path

from .. import __version__, backends, data, machine, stats
from ..allocator import keep_freed_memory
from ..errors import UserError
from ..floor import matmul_gflops, training_flops
from ..spec import load_spec
from .output import atomic_directory, refuse_nonempty, report_markdown, side_by_side, verdict_lines, write_json
from .schedule import block_ends, judged
from .scheduler import run_repeat
from .summary import aggregate, build_run, verdicts

QUICK_TRAIN, QUICK_TEST = 12_000, 2_000
DEFAULT_REPEATS = 4  # a ±2.5 % median interval on the simulated machine (test_stats.py)
DEFAULT_BLOCKS = 9  # per epoch: seven judged in a one-epoch run, a few seconds each on MNIST
SCHEMA = 3  # results.json layout; bump when a field changes meaning


def worker_labels(names: list[str]) -> list[str]:
    """'torch,torch' -> ['torch', 'torch#2']: the same framework twice is the A/A self-test."""
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return labels


def parse_frameworks(text: str | None) -> list[str]:
    if text is None:
        names = backends.available()
        if not names:
            raise backends.FrameworkMissing("no framework is installed: pip install 'twincnn[all]'")
        return names
    names = [backends.canonical_name(part) for part in text.split(",") if part.strip()]
    if not names:
        raise UserError("no framework named; use e.g. --frameworks tensorflow,torch")
    for name in names:  # the parent imports no framework: ask only whether it is there
        if not backends.is_available(name):
            raise backends.FrameworkMissing(backends.install_hint(name))
    return names


def default_out(root: Path = Path("results"), commit: str | None = None) -> Path:
    """results/<machine-id>/<UTC time>-<commit>/: results from many machines copy together without clashes."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = (commit or "nogit")[:8]
    return root / machine.machine_id() / f"{stamp}-{commit}"


def interleaving(block_steps: int, steps_per_epoch: int) -> str:
    blocks = len(block_ends(steps_per_epoch, block_steps))
    return "epochs interleaved" if blocks == 1 else \
        f"interleaved in blocks of ~{steps_per_epoch // blocks} steps ({blocks} per epoch)"


def block_steps_for(args, steps_per_epoch: int) -> int:
    """Steps per turn. Whole epochs (0) where a block would not be a like-for-like unit: the notebook protocol
    times Keras's validation pass inside its last block only, and an asynchronous device's steps would be
    cut at host-side returns, not at finished work."""
    if args.protocol == "notebook" or args.device != "cpu":
        if args.block_steps:
            raise UserError("--block-steps applies to the fair protocol on the CPU; leave it out here")
        return 0
    if args.block_steps is None:
        return -(-steps_per_epoch // DEFAULT_BLOCKS)  # ceil: DEFAULT_BLOCKS blocks, or one a step
    return args.block_steps


def default_epochs(blocks: int) -> int:
    """The shortest run with judged blocks: one epoch cut into blocks, two where epochs are whole (the
    first is warm-up)."""
    return 1 if len(judged(1, blocks)) < blocks else 2


def _terminate(signum, frame):
    raise KeyboardInterrupt  # a kill ends the run as Ctrl-C does: workers stopped, nothing written


def run(args) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    names = parse_frameworks(args.frameworks)
    labels = worker_labels(names)
    spec = load_spec(args.spec)
    dataset = data.load(args.data)
    subset = (QUICK_TRAIN, QUICK_TEST) if args.quick else None
    if subset:
        dataset = dataset.subset(*subset)
    repeats = args.repeats or DEFAULT_REPEATS
    if args.protocol == "notebook" and args.device == "cuda":
        raise UserError("--protocol notebook reproduces a CPU run; use --device cpu")
    threads = args.threads or machine.usable_cpus()
    steps_per_epoch = math.ceil(len(dataset.y_train) / args.batch_size)
    block_steps = block_steps_for(args, steps_per_epoch)
    epochs = args.epochs or default_epochs(len(block_ends(steps_per_epoch, block_steps)))
    variant = args.variant if args.protocol == "fair" else "idiomatic"
    seeds = [args.seed + i for i in range(repeats)]
    commit = machine.git_commit()  # once: it runs git
    out = Path(args.out) if args.out else default_out(commit=commit)
    refuse_nonempty(out)  # now, not after minutes of training
    n_train, n_test = len(dataset.y_train), len(dataset.y_test)
    y_test = dataset.labels("test")

    log = print
    log(f"twincnn compare: {', '.join(labels)}; {args.protocol} protocol, {variant} code, {epochs} epoch(s) x "
        f"{repeats} repeat(s) (seeds {seeds}), batch {args.batch_size}, {n_train:,}/{n_test:,} images, "
        f"{threads} threads, one process per framework and repeat, {interleaving(block_steps, steps_per_epoch)}"
        + (" [QUICK DEMO]" if args.quick else ""))
    allocator = keep_freed_memory()
    idle_check = machine.load_reading()
    time.sleep(1.0)  # one quiet second: what the CPU does now is other work, not twincnn
    before = machine.load_reading()
    before["busy_share"] = machine.busy_share(idle_check, before)
    # The floor is a CPU matmul rate: it says nothing of a GPU's, so a CUDA run has none.
    measure_floor = not args.no_floor and args.device == "cpu"
    matmul_before = matmul_gflops(threads) if measure_floor else None

    runs = {label: [] for label in labels}
    environments = {}
    for repeat, seed in enumerate(seeds):
        log(f"repeat {repeat + 1}/{repeats} (seed {seed})")
        jobs = [{"framework": name, "label": label, "seed": seed, "protocol": args.protocol, "variant": variant,
                 "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr, "threads": threads,
                 "device": args.device, "progress": not args.no_progress, "data": args.data, "subset": subset,
                 "spec": spec.to_dict(), "steps_per_epoch": steps_per_epoch, "block_steps": block_steps} for name, label in zip(names, labels)]
        for job, messages in zip(jobs, run_repeat(jobs, repeat)):
            runs[job["label"]].append(build_run(job, messages, n_train))
            environments.setdefault(job["label"], messages["ready"]["environment"])

    matmul_after = matmul_gflops(threads) if measure_floor else None
    after = machine.load_reading()
    floor = None
    if matmul_before:
        flops = training_flops(spec, n_train, epochs)
        floor = {"matmul_gflops": matmul_before, "matmul_gflops_after": matmul_after, "threads": threads,
                 "method": f"numpy float32 matmul 2048x2048, best of 5, {threads} BLAS thread(s)",
                 "train_flops": flops, "floor_seconds": flops / (matmul_before * 1e9)}
    results = {label: aggregate(runs[label], y_test, floor and floor["floor_seconds"]) for label in labels}
    judged = verdicts(runs, args.noise_threshold) if len(labels) > 1 else []
    # Steady-state epochs of every repeat together: a slow repeat is noise as much as a slow epoch.
    epoch_times = {label: {f"repeat {repeat} epoch {epoch}": t for repeat, r in enumerate(runs[label], 1)
                           for epoch, t in enumerate(r["history"]["epoch_seconds"], 1) if epoch > 1 or epochs == 1}
                   for label in labels}
    waiting = {label: (sum(r["waiting_cpu_seconds"] for r in runs[label]), sum(r["train_seconds"] for r in runs[label]))
               for label in labels}
    flags = stats.noise_flags(epoch_times, matmul_before, matmul_after, before, after, waiting)
    flags += stats.load_flags({label: runs[label] for label in labels})
    in_force = {label: runs[label][0]["threads"]["intra_op_threads"] for label in labels}
    if len(set(in_force.values())) > 1:
        flags.append("the workers trained on different thread counts: "
                     + ", ".join(f"{label} {n}" for label, n in in_force.items()))
    advice = [f"{v['frameworks'][0]} vs {v['frameworks'][1]}: a CI within ±{args.noise_threshold:.0%} needs "
              f"about --repeats {stats.repeats_for(_interval(v), repeats, args.noise_threshold)}"
              for v in judged if stats.repeats_for(_interval(v), repeats, args.noise_threshold) > repeats]
    if repeats == 1 and judged:
        advice.insert(0, "1 repeat: the CI covers noise within one process only, not differences between "
                         "processes; use --repeats 3 or more")

    doc = {
        "schema": SCHEMA,
        "twincnn": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {"protocol": args.protocol, "variant": variant, "epochs": epochs, "batch_size": args.batch_size,
                   "lr": args.lr, "seeds": seeds, "repeats": repeats, "threads": threads, "device": args.device,
                   "steps_per_epoch": steps_per_epoch, "block_steps": block_steps,
                   "interleaving": interleaving(block_steps, steps_per_epoch),
                   "quick": args.quick, "frameworks": names, "labels": labels,
                   "noise_threshold": args.noise_threshold, "spec": spec.to_dict(),
                   "parameters": spec.total_params},
        "machine": machine.describe(),
        "environment": {
            "python": platform.python_version(), "platform": platform.platform(), "allocator": allocator,
            "git_commit": commit, "argv": sys.argv[1:],
            "frameworks": environments,
            "load_before": before, "load_after": after,
        },
        "data": {"source": dataset.source, "sha256": dataset.sha256, "train_images": n_train,
                 "test_images": n_test},
        "floor": floor,
        "verdicts": judged,
        "noise": {"flags": flags, "advice": advice},
        "frameworks": results,
    }
    log("")
    log(side_by_side(results))
    log("")
    log("\n".join(verdict_lines(doc)))
    with atomic_directory(out) as tmp:
        from .plots import draw_all

        title = f"{args.protocol} protocol, {n_train:,} images" + (" (quick demo)" if args.quick else "")
        doc["figures"] = draw_all(results, tmp, title, judged)
        (tmp / "report.md").write_text(report_markdown(doc))
        write_json(tmp / "results.json", doc)  # last: its presence marks a complete run
    if not args.out:  # beside the runs of this machine, as asv keeps it
        write_json(out.parent / "machine.json", doc["machine"])
    log(f"\nwrote {out}/results.json, report.md, {', '.join(doc['figures'])}")
    return 0


def _interval(verdict: dict) -> stats.Interval:
    low, high = verdict["ci"]
    return stats.Interval(verdict["ratio"], low, math.inf if high is None else high, verdict["units"],
                          verdict["unit"], verdict["confidence"])
