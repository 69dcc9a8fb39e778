"""`twincnn compare`: options -> interleaved worker runs -> verdicts, table, results directory."""

from __future__ import annotations

import datetime as dt
import math
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .. import __version__, backends, data, machine, stats
from ..allocator import keep_freed_memory
from ..errors import UserError
from ..floor import matmul_gflops, training_flops
from ..spec import Spec, default_spec_for
from ..zoo import load_spec
from ..sources import read_in_worker
from .output import (atomic_directory, refuse_nonempty, report_markdown, scaling_lines, side_by_side, verdict_lines,
                     write_json)
from . import precision
from .schedule import block_ends, judged
from .workers import run_repeat
from .figures import aggregate, build_run, epoch_name, verdicts

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
    """--frameworks: the names given; ``all``: every installed twin; none given: the installed native twins."""
    if text is None or text.strip().lower() == "all":
        names = backends.available() if text is not None else backends.natives()
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


@dataclass(frozen=True)
class Plan:
    """One compare run's settings, resolved from the options before anything is timed."""

    names: list[str]
    labels: list[str]
    ranks: list[int]  # per worker: 1, or the ranks of a data-parallel twin
    spec: Spec
    dataset: data.Dataset
    subset: tuple[int, int] | None
    repeats: int
    epochs: int
    steps_per_epoch: int
    block_steps: int
    threads: int
    variant: str
    seeds: list[int]
    commit: str | None
    out: Path
    network: str  # where the spec came from, for the headline and the report
    data: str | None  # --data, which every worker loads
    data_options: dict  # data.load's options (an image folder's colour mode and size)
    initial_weights: str | None  # a canonical weights file every repeat starts from (--keep-weights)
    protocol: str
    batch_size: int
    lr: float
    device: str
    progress: bool
    quick: bool
    noise_threshold: float
    precision: float | None  # --precision: repeats added until every verdict's half-width is this or less
    max_minutes: float  # ... while one more repeat fits in this many minutes of training
    min_accuracy: float | None
    measure_floor: bool  # the CPU's matmul rate before and after training
    out_chosen: bool  # --out named the directory (else it sits in results/<machine-id>/)

    def jobs(self, seed: int) -> list[dict]:
        """What each worker of one repeat is told to do."""
        return [{"framework": name, "label": label, "seed": seed, "protocol": self.protocol, "variant": self.variant,
                 "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "ranks": ranks,
                 "threads": self.threads // ranks,
                 "device": self.device, "progress": self.progress, "data": self.data, "subset": self.subset,
                 "data_options": self.data_options, "initial_weights": self.initial_weights,
                 "spec": self.spec.to_dict(), "steps_per_epoch": self.steps_per_epoch, "block_steps": self.block_steps}
                for name, label, ranks in zip(self.names, self.labels, self.ranks)]

    def pairs(self) -> list[tuple[str, str]] | None:
        """The comparisons judged: with data-parallel twins each framework's R ranks against its one process
        (its scaling, first: scaling() reads them there), then each framework's one process against the first
        one's, and its R ranks against the first one's R ranks; None: the default."""
        if max(self.ranks) == 1:
            return first_and_layered_pairs(self.names, self.labels)
        single = [label for label, ranks in zip(self.labels, self.ranks) if ranks == 1]
        parallel = [label for label, ranks in zip(self.labels, self.ranks) if ranks > 1]
        return (list(zip(single, parallel)) + [(single[0], other) for other in single[1:]]
                + [(parallel[0], other) for other in parallel[1:]])



def first_and_layered_pairs(names: list[str], labels: list[str]) -> list[tuple[str, str]] | None:
    """Each framework against the first one named, and a twin that runs on another one named (Keras on JAX) against
    that one, where the first pairs do not hold the two already; None: the default (the first pairs only)."""
    pairs = [(labels[0], other) for other in labels[1:]]
    label_of = {}
    for name, label in zip(names, labels):
        label_of.setdefault(name, label)
    for name, label in zip(names, labels):
        base = backends.BACKENDS[name].runs_on
        if base in label_of and {label_of[base], label} not in [set(pair) for pair in pairs]:
            pairs.append((label_of[base], label))
    return pairs if len(pairs) > len(labels) - 1 else None


def data_parallel_workers(names: list[str], args, threads: int) -> tuple[list[str], list[str], list[int]]:
    """(names, labels, ranks) with each framework once in one process and once as ``args.ranks`` ranks, with
    the same threads in all; the options data parallelism needs are checked here, in one line each."""
    ranks = args.ranks
    for name in dict.fromkeys(names):
        backends.parallel_module(name)  # one that has no data-parallel twin is refused, naming those that do
    if args.protocol != "fair":
        raise UserError("--ranks trains on the shared batch order: use --protocol fair")
    if args.variant != "tuned":
        raise UserError("--ranks compares each framework's data-parallel loop with its tuned one-process loop: "
                        "use --variant tuned")
    if args.device != "cpu":
        raise UserError("--ranks trains its ranks on the CPU: use --device cpu")
    if args.batch_size % ranks:
        raise UserError(f"--batch-size {args.batch_size} cannot be split evenly over {ranks} ranks; "
                        f"use a multiple of {ranks}")
    if threads % ranks:
        raise UserError(f"{threads} threads cannot be shared evenly by {ranks} ranks; use --threads with a "
                        f"multiple of {ranks}")
    labels = worker_labels(names)
    return ([name for name in names for _ in (1, ranks)], [f for label in labels for f in (label, f"{label}x{ranks}")],
            [r for _ in names for r in (1, ranks)])


def network_for(args, dataset: data.Dataset, workdir: Path) -> tuple[Spec, str, str | None]:
    """(spec, what it is, a file of the model's own weights or None): --model read in a worker process (the
    parent imports no framework), --spec, or the notebook's CNN built for the data's images and classes."""
    if args.model:
        spec, weights = read_in_worker(args.model, args.spec, dataset.input_shape, workdir, args.keep_weights)
        return spec, f"read from {args.model}", str(weights) if weights else None
    if args.spec:
        return load_spec(args.spec, dataset.input_shape), f"spec {args.spec}", None
    spec = default_spec_for(dataset.input_shape, dataset.num_classes)
    h, w, c = dataset.input_shape
    return spec, f"the notebook's CNN built for {h}x{w}x{c} images in {dataset.num_classes} classes", None


def make_plan(args, workdir: Path) -> Plan:
    """Every option checked and every default resolved; the results directory refused now if it is in use,
    not after minutes of training. ``workdir``: a folder that lives as long as the run."""
    names = parse_frameworks(args.frameworks)
    threads = args.threads or machine.usable_cpus()
    labels, ranks = worker_labels(names), [1] * len(names)
    if args.ranks > 1:
        names, labels, ranks = data_parallel_workers(names, args, threads)
    if args.keep_weights and not args.model:
        raise UserError("--keep-weights starts from the weights of --model; name a model, or leave it out")
    if args.max_minutes and args.precision is None:
        raise UserError("--max-minutes bounds the repeats --precision adds; give --precision P as well")
    if args.precision is not None and len(labels) < 2:
        raise UserError("--precision narrows the verdicts' intervals, and one framework has none: name two or more "
                        "with --frameworks")
    if args.protocol == "notebook" and args.device == "cuda":
        raise UserError("--protocol notebook reproduces a CPU run; use --device cpu")
    commit = machine.git_commit()  # once: it runs git
    out = Path(args.out) if args.out else default_out(commit=commit)
    refuse_nonempty(out)
    # what takes time last: decoding an image folder, reading a model in a process of its own
    options = data.options(args)
    dataset = data.load(args.data, **options)
    spec, network, weights = network_for(args, dataset, workdir)
    data.check_fits(spec, dataset, network)
    subset = (QUICK_TRAIN, QUICK_TEST) if args.quick else None
    if subset:
        dataset = dataset.subset(*subset)
    steps_per_epoch = math.ceil(len(dataset.y_train) / args.batch_size)
    block_steps = block_steps_for(args, steps_per_epoch)
    repeats = args.repeats or DEFAULT_REPEATS
    if args.precision is not None:
        repeats = max(repeats, precision.MIN_REPEATS)
    return Plan(names=names, labels=labels, ranks=ranks, spec=spec, dataset=dataset, subset=subset,
                repeats=repeats, epochs=args.epochs or default_epochs(len(block_ends(steps_per_epoch, block_steps))),
                steps_per_epoch=steps_per_epoch, block_steps=block_steps,
                threads=threads,
                variant=args.variant if args.protocol == "fair" else "idiomatic",
                seeds=[args.seed + i for i in range(repeats)], commit=commit, out=out, network=network,
                data=args.data, data_options=options, initial_weights=weights, protocol=args.protocol,
                batch_size=args.batch_size, lr=args.lr, device=args.device, progress=not args.no_progress,
                quick=args.quick, noise_threshold=args.noise_threshold, precision=args.precision,
                max_minutes=args.max_minutes or precision.DEFAULT_MAX_MINUTES, min_accuracy=args.min_accuracy,
                # the floor is a CPU matmul rate: it says nothing of a GPU's, so a CUDA run has none
                measure_floor=not args.no_floor and args.device == "cpu", out_chosen=bool(args.out))


def headline(plan: Plan) -> str:
    n_train, n_test = len(plan.dataset.y_train), len(plan.dataset.y_test)
    return (f"twincnn compare: {', '.join(plan.labels)}; {plan.protocol} protocol, {plan.variant} code, "
            f"{plan.epochs} epoch(s) x {plan.repeats} repeat(s) (seeds {plan.seeds}), batch {plan.batch_size}, "
            f"{n_train:,}/{n_test:,} images, {plan.threads} threads, {processes(plan)} per framework and repeat, "
            f"{interleaving(plan.block_steps, plan.steps_per_epoch)}" + (" [QUICK DEMO]" if plan.quick else "")
            + f"\n  network: {plan.network}, {plan.spec.total_params:,} parameters"
            + ("; each repeat starts from the model's own weights" if plan.initial_weights else "")
            + f"\n  data: {plan.dataset.source}, {data.shape_text(plan.dataset.input_shape)} images "
              f"({plan.dataset.pixel_scale}), "
              f"{plan.dataset.num_classes} classes" + "".join(f"; {note}" for note in plan.dataset.notes))


def processes(plan: Plan) -> str:
    ranks = max(plan.ranks)
    return "one process" if ranks == 1 else (f"one process and {ranks} data-parallel ranks of {plan.threads // ranks} "
                                              f"thread(s) each ({launcher_note(ranks)})")


def launcher_note(ranks: int) -> str:
    return f"{ranks} local processes sharing this machine's CPUs, not a cluster"


def scaling(plan: Plan, judged: list) -> list[dict]:
    """Per framework: its R ranks' speed-up over its one process (same threads in all), from that pair's verdict."""
    out = []
    if max(plan.ranks) == 1:  # no ranks: the pairs judged are frameworks against each other
        return out
    for single, parallel in plan.pairs()[:plan.ranks.count(1)]:
        verdict = next(v for v in judged if v["frameworks"] == [single, parallel])
        low, high = verdict["ci"]
        ranks = max(plan.ranks)
        out.append({"framework": single, "ranks": ranks, "speedup": verdict["ratio"],
                    "ci": [low, high], "confidence": verdict["confidence"], "efficiency": verdict["ratio"] / ranks,
                    "launcher": "local", "note": launcher_note(ranks)})
    return out


def quiet_second() -> dict:
    """The machine's reading after one second in which twincnn does nothing: what the CPU did meanwhile is
    other work."""
    idle_check = machine.load_reading()
    time.sleep(1.0)
    before = machine.load_reading()
    before["busy_share"] = machine.busy_share(idle_check, before)
    return before


def train_repeats(plan: Plan, log) -> tuple[dict, dict, list[int], dict | None]:
    """({label: [run per repeat]}, {label: the worker's environment}, the seeds run, what --precision did or None):
    the planned repeats one after another, then, with --precision, one more at a time until the verdicts'
    intervals are as narrow as asked or another repeat would pass --max-minutes."""
    runs = {label: [] for label in plan.labels}
    environments, seeds, seconds = {}, list(plan.seeds), []
    started = time.monotonic()
    while True:
        repeat = len(seconds)
        if repeat == len(seeds):
            seeds.append(seeds[-1] + 1)
        log(f"repeat {repeat + 1}/{plan.repeats} (seed {seeds[repeat]})" if repeat < plan.repeats else
            f"repeat {repeat + 1}, added for --precision {plan.precision:g} (seed {seeds[repeat]})")
        begun = time.monotonic()
        jobs = plan.jobs(seeds[repeat])
        for job, messages in zip(jobs, run_repeat(jobs, repeat)):
            runs[job["label"]].append(build_run(job, messages, len(plan.dataset.y_train)))
            environments.setdefault(job["label"], messages["ready"]["environment"])
        seconds.append(time.monotonic() - begun)
        load = stats.repeat_load([label_runs[-1] for label_runs in runs.values()])
        if load is not None:
            log(f"  repeat {repeat + 1}: other processes took {load:.0%} of the CPU during its timed blocks")
        if len(seconds) < plan.repeats:
            continue
        if plan.precision is None:
            return runs, environments, seeds, None
        judged = verdicts(runs, plan.noise_threshold, plan.pairs(), spread_from=plan.repeats)
        log(precision.progress_line(judged, plan.precision, len(seconds), seconds))
        elapsed = time.monotonic() - started
        reason = precision.stop_reason(judged, plan.precision, elapsed, seconds, plan.max_minutes * 60)
        if reason:
            return runs, environments, seeds, precision.record(plan.precision, plan.max_minutes, plan.repeats,
                                                               len(seconds), reason, judged, elapsed)


def hardware_floor(plan: Plan, matmul_before: float | None, matmul_after: float | None) -> dict | None:
    if not matmul_before:
        return None
    flops = training_flops(plan.spec, len(plan.dataset.y_train), plan.epochs)
    return {"matmul_gflops": matmul_before, "matmul_gflops_after": matmul_after, "threads": plan.threads,
            "method": f"numpy float32 matmul 2048x2048, best of 5, {plan.threads} BLAS thread(s)",
            "train_flops": flops, "floor_seconds": flops / (matmul_before * 1e9)}


def noise_report(plan: Plan, runs: dict, judged: list, floor: dict | None, before: dict, after: dict,
                 noise_threshold: float) -> tuple[list[str], list[str]]:
    """(flags: reasons to distrust the run, advice: how many repeats a tighter interval needs)."""
    # Steady-state epochs of every repeat together: a slow repeat is noise as much as a slow epoch.
    epoch_times = {label: {epoch_name(r["epoch_breakdown"], repeat, epoch): t for repeat, r in enumerate(runs[label], 1)
                           for epoch, t in enumerate(r["history"]["epoch_seconds"], 1) if epoch > 1 or plan.epochs == 1}
                   for label in plan.labels}
    waiting = {label: (sum(r["waiting_cpu_seconds"] for r in runs[label]), sum(r["train_seconds"] for r in runs[label]))
               for label in plan.labels}
    flags = stats.noise_flags(epoch_times, floor and floor["matmul_gflops"], floor and floor["matmul_gflops_after"],
                              before, after, waiting)
    flags += stats.load_flags({label: runs[label] for label in plan.labels})
    in_force = {label: runs[label][0]["threads"]["intra_op_threads"] for label in plan.labels}
    if len(set(in_force.values())) > 1:
        flags.append("the workers trained on different thread counts: "
                     + ", ".join(f"{label} {n}" for label, n in in_force.items()))
    advice = [f"{v['frameworks'][0]} vs {v['frameworks'][1]}: a CI within ±{noise_threshold:.0%} needs "
              f"about --repeats {stats.repeats_for(stats.interval_of(v), plan.repeats, noise_threshold)}"
              for v in judged if stats.repeats_for(stats.interval_of(v), plan.repeats, noise_threshold) > plan.repeats]
    advice += stats.load_advice({label: runs[label] for label in plan.labels})
    if plan.repeats == 1 and judged:
        advice.insert(0, "1 repeat: the CI covers noise within one process only, not differences between "
                         "processes; use --repeats 3 or more")
    return flags, advice


def write_results(plan: Plan, doc: dict) -> None:
    """The results directory, all or nothing: results.json is written last and marks a complete run."""
    with atomic_directory(plan.out) as tmp:
        from .plots import draw_all

        title = f"{plan.protocol} protocol, {len(plan.dataset.y_train):,} images" + (" (quick demo)" if plan.quick else "")
        doc["figures"] = draw_all(doc["frameworks"], tmp, title, doc["verdicts"])
        (tmp / "report.md").write_text(report_markdown(doc))
        (tmp / "spec.json").write_text(plan.spec.to_json())  # --spec spec.json repeats the run
        write_json(tmp / "results.json", doc)
    if not plan.out_chosen:  # beside the runs of this machine, as asv keeps it
        write_json(plan.out.parent / "machine.json", doc["machine"])


@dataclass
class Measured:
    """What one compare measured: the workers' runs and the machine around them."""

    runs: dict
    environments: dict
    seeds: list[int]  # every repeat's, those --precision added included
    precision: dict | None  # what --precision did (precision.record)
    before: dict
    after: dict
    floor: dict | None
    allocator: str


def measure(plan: Plan, log) -> Measured:
    """The quiet second, the matmul floor, every repeat's workers, the floor again."""
    allocator = keep_freed_memory()
    before = quiet_second()
    measure_floor = plan.measure_floor
    matmul_before = matmul_gflops(plan.threads) if measure_floor else None
    runs, environments, seeds, precise = train_repeats(plan, log)
    matmul_after = matmul_gflops(plan.threads) if measure_floor else None
    after = machine.load_reading()
    return Measured(runs, environments, seeds, precise, before, after, hardware_floor(plan, matmul_before, matmul_after),
                    allocator)


def document(plan: Plan, measured: Measured) -> dict:
    """results.json: settings, machine, environment, data, the verdicts, scaling, noise and every run. The repeats
    and seeds are those run (--precision may add to the planned ones)."""
    spread_from = plan.repeats if plan.precision is not None else None  # the planned repeats' (precision.py)
    plan = replace(plan, repeats=len(measured.seeds), seeds=measured.seeds)
    runs, floor = measured.runs, measured.floor
    y_test = plan.dataset.labels("test")
    results = {label: aggregate(runs[label], y_test, floor and floor["floor_seconds"], plan.dataset.class_names)
               for label in plan.labels}
    judged = verdicts(runs, plan.noise_threshold, plan.pairs(), spread_from) if len(plan.labels) > 1 else []
    flags, advice = noise_report(plan, runs, judged, floor, measured.before, measured.after, plan.noise_threshold)
    return {
        "schema": SCHEMA,
        "twincnn": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {"protocol": plan.protocol, "variant": plan.variant, "epochs": plan.epochs,
                   "batch_size": plan.batch_size, "lr": plan.lr, "seeds": plan.seeds, "repeats": plan.repeats,
                   "threads": plan.threads, "device": plan.device, "steps_per_epoch": plan.steps_per_epoch,
                   "block_steps": plan.block_steps, "interleaving": interleaving(plan.block_steps, plan.steps_per_epoch),
                   "quick": plan.quick, "frameworks": plan.names, "labels": plan.labels, "ranks": plan.ranks,
                   "noise_threshold": plan.noise_threshold, "spec": plan.spec.to_dict(),
                   "parameters": plan.spec.total_params, "network": plan.network,
                   "initial_weights": "the model's own" if plan.initial_weights else "canonical, from each seed",
                   "min_accuracy": plan.min_accuracy},
        "machine": machine.describe(),
        "environment": {
            "python": platform.python_version(), "platform": platform.platform(), "allocator": measured.allocator,
            "git_commit": plan.commit, "argv": sys.argv[1:], "frameworks": measured.environments,
            "load_before": measured.before, "load_after": measured.after,
        },
        "data": {"source": plan.dataset.source, "sha256": plan.dataset.sha256,
                 "train_images": len(plan.dataset.y_train), "test_images": len(plan.dataset.y_test),
                 "input_shape": list(plan.dataset.input_shape), "class_names": list(plan.dataset.class_names),
                 "pixel_scale": plan.dataset.pixel_scale, "notes": list(plan.dataset.notes),
                 "options": plan.data_options},
        "floor": floor,
        "verdicts": judged,
        "scaling": scaling(plan, judged),
        "noise": {"flags": flags, "advice": advice},
        "precision": measured.precision,
        "frameworks": results,
    }


def run(args) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    with tempfile.TemporaryDirectory(prefix="twincnn-compare-") as workdir:
        plan = make_plan(args, Path(workdir))
        log = print
        log(headline(plan))
        doc = document(plan, measure(plan, log))
    log("")
    log(side_by_side(doc["frameworks"]))
    log("")
    log("\n".join(verdict_lines(doc) + scaling_lines(doc["scaling"])))
    write_results(plan, doc)
    log(f"\nwrote {plan.out}/results.json, report.md, spec.json, {', '.join(doc['figures'])}")
    below = below_accuracy(doc["frameworks"], plan.min_accuracy)
    for line in below:
        print(f"twincnn compare: {line}", file=sys.stderr)
    return 1 if below else 0


def below_accuracy(results: dict, minimum: float | None) -> list[str]:
    """One line per framework whose median test accuracy is under ``minimum`` (--min-accuracy)."""
    if minimum is None:
        return []
    return [f"{label}: median test accuracy {r['test_accuracy']:.2%} is below --min-accuracy {minimum:.2%}"
            for label, r in results.items() if r["test_accuracy"] < minimum]
