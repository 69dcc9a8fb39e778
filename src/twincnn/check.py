"""`twincnn check A B`: are two models that users wrote themselves the same function?

Both are read into canonical specs (backends' readers), compared layer by layer; A's weights are copied into B
through the canonical layout (unless kept as they are), then both run on the same inputs: logits in inference
mode, gradients of the loss in training mode (dropout off in both: its masks are random), BatchNorm's moving
statistics after that pass, and one Adam step computed from each model's gradients. Where they differ, the first layer whose output differs is named.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from . import backends, reference
from .errors import UserError
from .sources import MNIST_CLASSES, MNIST_SHAPE, TwinOf, label_of, load_source, read_pair
from .spec import INPUT
from .tables import render
from .weights import Mismatch, worst_mismatch

# Stated tolerances, each relative to the largest magnitude compared (and at least to 1): float32 rounding in
# two frameworks gives ~1e-6 of it; a wrong padding, epsilon, flatten order or activation gives 1e-3 and more.
LOGIT_RTOL = 1e-4
GRAD_RTOL = 1e-4
MOVING_STAT_RTOL = 1e-6  # PyTorch's unbiased running variance differs by (1 - momentum) var / (N - 1)
STEP_ATOL = 1e-5  # one Adam step moves a weight by about lr = 1e-3: 1 % of it
ADAM_FLOOR = 1e-3
ADAM = {"lr": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}  # Keras's defaults
GRAD_BATCH = 8  # small, so that a batch whose ReLU inputs all keep clear of the kink is found among a few
# training-mode passes: their median decides, so that one batch where a ReLU input within rounding of its kink
# switched in one model only (after BatchNorm divides by a small batch deviation) decides nothing
GRAD_BATCHES = 3
# Where a batch's gradients differ beyond GRAD_RTOL, A's own are taken again after a one-ulp change of its inputs
# (ROUNDING_DRAWS draws): a network whose training-mode gradients rounding alone moves that far (a ReLU input at its
# kink, BatchNorm over a batch deviation near zero) is held to ROUNDING_FACTOR times that, and the table says so.
ROUNDING_DRAWS = 2
ROUNDING_FACTOR = 2.0


@dataclass
class Comparison:
    what: str
    worst: Mismatch
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.worst.max_abs <= self.tolerance


@dataclass
class CheckResult:
    """What `check` found; ``report`` is the text it prints."""

    same_architecture: bool
    comparisons: list[Comparison] = field(default_factory=list)
    first_divergence: str | None = None  # the line naming the first differing layer
    report: str = ""

    @property
    def same(self) -> bool:
        return self.same_architecture and bool(self.comparisons) and all(c.ok for c in self.comparisons)


# -- comparing -----------------------------------------------------------------------------------------------
def align(a_spec, b_spec) -> list[tuple]:
    """The two specs' layers paired up (an (info, info) pair, or (info, None) / (None, info) for a layer only one
    has), in order: a missing or extra layer shifts nothing after it."""
    def key(info):
        return info.type, info.output_shape

    pairs = []
    matcher = difflib.SequenceMatcher(None, [key(i) for i in a_spec.info], [key(i) for i in b_spec.info],
                                      autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        common = min(a1 - a0, b1 - b0) if op == "replace" else (a1 - a0 if op == "equal" else 0)
        pairs += [(a_spec.info[a0 + k], b_spec.info[b0 + k]) for k in range(common)]
        pairs += [(info, None) for info in a_spec.info[a0 + common:a1]]
        pairs += [(None, info) for info in b_spec.info[b0 + common:b1]]
    return pairs


def _differences(a, b, partner: dict) -> list[str]:
    """What differs between two paired layers, as 'key: A's vs B's'; ``partner`` names B's layers by the names
    of A's layers they are paired with, so that a layer one model lacks renames nothing."""
    if a is None or b is None:
        return ["only in " + ("A" if a else "B")]
    if a.type != b.type:
        return [f"type: {a.type} vs {b.type}"]
    out = [f"{key}: {a.config.get(key)} vs {b.config.get(key)}" for key in sorted(set(a.config) | set(b.config))
           if a.config.get(key) != b.config.get(key)]
    b_inputs = tuple(partner.get(name, f"B's {name}") for name in b.inputs)
    if a.inputs != b_inputs:
        out.append(f"inputs: {', '.join(a.inputs)} vs {', '.join(b_inputs)}")
    if a.output_shape != b.output_shape:
        out.append(f"output: {a.output_shape} vs {b.output_shape}")
    return out


def architecture_table(a, b, pairs) -> tuple[str, list[str]]:
    """A side-by-side table of the two canonical specs' paired layers and the differences, one line each."""
    rows, differences = [], []
    partner = {INPUT: INPUT, **{lb.name: la.name for la, lb in pairs if la and lb}}
    if a.spec.input_shape != b.spec.input_shape:
        differences.append(f"input: {a.spec.input_shape} vs {b.spec.input_shape}")
    for la, lb in pairs:
        diff = _differences(la, lb, partner)
        if diff:
            named = " / ".join(f"{side}'s {info.name} ({info.type})" for side, info in (("A", la), ("B", lb)) if info)
            differences.append(f"{named}: " + "; ".join(diff))
        rows.append([*_cells(la, a), *_cells(lb, b), "differs" if diff else ""])
    if a.spec.output != b.spec.output:  # after the last layer, as the head is
        differences.append(f"output head: {a.spec.output} vs {b.spec.output}")
    table = render(["A", "A path", "A output", "A params", "B", "B path", "B output", "B params", ""], rows)
    return table, differences


def _head(spec) -> str:
    """The spec's output head as the A:/B: lines name it; nothing for plain logits."""
    return "" if spec.output == "logits" else f", output {spec.output}"


def _cells(info, read) -> list:
    if info is None:
        return ["", "", "", ""]
    return [f"{info.name} ({info.type})", read.paths.get(info.name, ""), "x".join(map(str, info.output_shape)),
            f"{info.params:,}"]


def _scaled(rtol: float, *arrays) -> float:
    largest = max((float(np.abs(np.asarray(v)).max()) for a in arrays for v in (a.values() if isinstance(a, dict)
                                                                                 else [a]) if np.size(v)), default=0.0)
    return rtol * max(1.0, largest)


def first_divergence(a, b, pairs, x) -> tuple[str, object] | None:
    """The first of the paired layers (in order) whose inference-mode outputs differ beyond LOGIT_RTOL, or that
    one model has and the other lacks: a line naming both models' layers, and the layer (A's where both)."""
    out_a, out_b = a.activations(x), b.activations(x)
    for la, lb in pairs:
        if la is None or lb is None:
            info, read, side = (la, a, "A") if la else (lb, b, "B")
            return f"{side}'s {info.name} ({info.type}, {read.paths.get(info.name, info.name)}): only {side} has it", info
        where = f"{la.name} ({la.type}; A: {a.paths.get(la.name, la.name)}, B: {b.paths.get(lb.name, lb.name)})"
        if out_a[la.name].shape != out_b[lb.name].shape:
            return f"{where}: output {out_a[la.name].shape[1:]} vs {out_b[lb.name].shape[1:]}", la
        m = worst_mismatch(out_b[lb.name], out_a[la.name], la.name)
        if m.max_abs > _scaled(LOGIT_RTOL, out_a[la.name]):
            return f"{where}: {m}", la
    return None


# The frameworks' differing defaults (see `twincnn audit`) behind a difference in a layer's setting
_CAUSES = {
    "padding": "padding side: Keras's 'same' pads the extra row and column at the bottom and right (a stride-2 "
               "convolution on an even size); PyTorch's padding=k pads k on every side",
    "momentum": "BatchNorm's momentum convention: Keras's weighs the running average (default 0.99), PyTorch's "
                "the new batch (default 0.1, which is 0.9 in Keras's terms)",
    "epsilon": "epsilon: Keras's BatchNormalization defaults to 1e-3, PyTorch's BatchNorm2d to 1e-5",
    "negative_slope": "LeakyReLU's slope: Keras's layer defaults to 0.3, PyTorch's to 0.01",
    "activation": "another activation function, or GELU's tanh approximation against the exact form",
}


def likely_causes(a, b, pairs, diverging, keep_weights: bool) -> list[str]:
    """The known framework differences that explain what check found, most specific first."""
    causes = []
    for la, lb in pairs:
        if la is not None and lb is not None and la.type == lb.type:
            causes += [cause for key, cause in _CAUSES.items() if la.config.get(key) != lb.config.get(key)]
        elif (la or lb).type == "activation":
            causes.append(f"a missing activation: only {'A' if la else 'B'} applies {(la or lb).activation} "
                          f"after {((la or lb).inputs or ['the input'])[0]}")
    if a.spec.output != b.spec.output:
        causes.append(f"output head: A returns {a.spec.output} of its logits, B {b.spec.output}: the same logits give "
                      f"other outputs (and the same loss, the cross-entropy of the logits)")
    if any("unbiased" in note for r in (a, b) for note in r.notes):
        causes.append("PyTorch's stock BatchNorm moves its running variance by the unbiased batch variance (N - 1); "
                      "Keras's by the biased one (N)")
    if keep_weights and diverging is not None and diverging.type == "dense" and any(
            info.name == diverging.inputs[0] and info.type == "flatten" for info in a.spec.info):
        causes.append("flatten order: weights moved by hand without permuting the dense layer's rows between "
                      "PyTorch's (C, H, W) and Keras's (H, W, C) flattening")
    return list(dict.fromkeys(causes))


def adam_step(weights: dict, grads: dict, keep: dict) -> dict:
    """The weights after one Adam step from zero moments (Keras's formula and defaults), in float64, at the
    elements ``keep`` marks (a boolean array per weight)."""
    lr, b1, b2, eps = ADAM["lr"], ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]
    out = {}
    for key, g in grads.items():
        g = np.asarray(g, np.float64)
        m, v = (1 - b1) * g, (1 - b2) * g * g
        out[key] = (weights[key] - lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps))[keep[key]]
    return out


def gradient_batches(read, x, y, count: int = GRAD_BATCHES) -> list[tuple]:
    """``count`` batches of GRAD_BATCH rows, each (x, y, its closest approach to a ReLU kink on A's reference
    forward in training mode): those keeping reference.KINK_MARGIN from every kink first, in order."""
    weights, batches = read.get_weights(), []
    for start in range(0, max(1, len(x) - GRAD_BATCH + 1), GRAD_BATCH):
        rows = slice(start, start + GRAD_BATCH)
        batches.append((x[rows], y[rows], reference.kink_distance(read.spec, weights, x[rows], training=True)))
        if sum(b[2] >= reference.KINK_MARGIN for b in batches) == count:
            break
    return sorted(batches, key=lambda b: b[2] < reference.KINK_MARGIN)[:count]


def _training_pass(a, b, batch) -> dict:
    """Both models' loss, gradients and weights after one training-mode pass on ``batch``; weights restored."""
    start_a, start_b = a.get_weights(), b.get_weights()
    loss_a, grads_a = a.loss_and_grads(*batch[:2])
    loss_b, grads_b = b.loss_and_grads(*batch[:2])
    after_a, after_b = a.get_weights(), b.get_weights()
    a.set_weights(start_a)  # the pass moved the moving statistics: put them back
    b.set_weights(start_b)
    return {"loss": (loss_a, loss_b), "grads": (grads_a, grads_b), "start": (start_a, start_b),
            "after": (after_a, after_b), "kink": batch[2], "worst": worst_mismatch(grads_b, grads_a),
            "batch": batch, "tolerance": _scaled(GRAD_RTOL, grads_a), "own": None}


def _own_rounding(a, batch, grads_a) -> dict:
    """A's gradients after a one-ulp change of every input (of ROUNDING_DRAWS draws, the one that moves them most).
    Where a batch sits at a ReLU kink, or BatchNorm divides by a batch deviation near zero, rounding alone moves
    A's own gradients that far, and another framework's rounding order may as well."""
    start, moved, worst = a.get_weights(), None, -1.0
    for draw in range(ROUNDING_DRAWS):
        sign = np.random.default_rng(draw).choice((-1.0, 1.0), batch[0].shape)
        x = np.asarray(batch[0] * (1 + sign * np.finfo(np.float32).eps), np.float32)
        grads = a.loss_and_grads(x, batch[1])[1]
        a.set_weights(start)
        if worst_mismatch(grads, grads_a).max_abs > worst:
            moved, worst = grads, worst_mismatch(grads, grads_a).max_abs
    return moved


def _widened_to_rounding(a, run: dict) -> None:
    """A pass whose gradients differ beyond the stated tolerance: the tolerance becomes ROUNDING_FACTOR times
    how far A's own gradients move under a one-ulp change of its inputs, where that is more."""
    run["own"] = _own_rounding(a, run["batch"], run["grads"][0])
    run["tolerance"] = max(run["tolerance"], ROUNDING_FACTOR * worst_mismatch(run["own"], run["grads"][0]).max_abs)


def compare_numerics(a, b, x, y, gradients: bool = True, adam: bool = True) -> tuple[list[Comparison], float]:
    """Logits; then, on the median of GRAD_BATCHES training-mode passes (by their worst gradient mismatch, so
    that one batch where a ReLU switched by rounding decides nothing), the loss, gradients, moving statistics
    and one Adam step; and that batch's closest approach to a ReLU kink."""
    logits_a, logits_b = a.predict(x), b.predict(x)
    found = [Comparison("logits (inference mode)", worst_mismatch(logits_b, logits_a, "logits"),
                        _scaled(LOGIT_RTOL, logits_a))]
    if not gradients:
        return found, np.inf
    # dropout draws its masks at random: training-mode passes are compared with it off, as the reference has it
    dropout = any(i.type == "dropout" and i.config["rate"] > 0 for i in (*a.spec.info, *b.spec.info))
    with a.without_dropout(), b.without_dropout():
        passes = [_training_pass(a, b, batch) for batch in gradient_batches(a, x, y)]
        for run in passes:
            if run["worst"].max_abs > run["tolerance"]:
                _widened_to_rounding(a, run)
    mode = "training mode, dropout off" if dropout else "training mode"
    passes.sort(key=lambda p: p["worst"].max_abs / p["tolerance"])
    run = passes[(len(passes) - 1) // 2]
    widened = run["own"] is not None and run["tolerance"] > _scaled(GRAD_RTOL, run["grads"][0])
    (loss_a, loss_b), (grads_a, grads_b) = run["loss"], run["grads"]
    (start_a, start_b), (after_a, after_b) = run["start"], run["after"]
    found.append(Comparison(f"loss ({mode})", worst_mismatch(np.float64(loss_b), np.float64(loss_a), "loss"),
                            _scaled(LOGIT_RTOL, np.float64(loss_a))))
    found.append(Comparison(f"gradients ({mode}; the median of {len(passes)} batches of {GRAD_BATCH}"
                            + (f"; tolerance {ROUNDING_FACTOR:g}x how far A's own move when its inputs move by one "
                               f"ulp)" if widened else ")"), run["worst"], run["tolerance"]))
    moving = [k for k in a.spec.weight_shapes() if k not in a.spec.trainable_weight_shapes()]
    if moving:
        found.append(Comparison("moving statistics after that pass", worst_mismatch(
            {k: after_b[k] for k in moving}, {k: after_a[k] for k in moving}), _scaled(MOVING_STAT_RTOL, after_a)))
    if not adam:
        return found, run["kink"]
    # Adam's first step is lr * g / (|g| + 3.2e-6): about lr * sign(g), and for a gradient near zero (a bias before
    # BatchNorm: zero but for rounding) rounding's sign. The step is compared where a gradient is at least
    # ADAM_FLOOR of the largest, so that it is far above that epsilon and above rounding.
    floor = ADAM_FLOOR * max(float(np.abs(g).max()) for g in grads_a.values())
    keep = {k: np.maximum(np.abs(grads_a[k]), np.abs(grads_b[k])) >= floor for k in grads_a}
    left_out = sum(int((~mask).sum()) for mask in keep.values())
    step_a, step_b = adam_step(start_a, grads_a, keep), adam_step(start_b, grads_b, keep)
    step_tolerance = STEP_ATOL
    if widened:  # the step from A's own gradients after a one-ulp change of its inputs moves as far
        own = worst_mismatch(adam_step(start_a, run["own"], keep), step_a).max_abs
        step_tolerance = max(STEP_ATOL, ROUNDING_FACTOR * own)
    found.append(Comparison(f"one Adam step (lr {ADAM['lr']:g}, each model's gradients"
                            + (f"; {left_out:,} under {ADAM_FLOOR:g} of the largest left out" if left_out else "")
                            + (f"; tolerance {ROUNDING_FACTOR:g}x A's own under a one-ulp input change)"
                               if step_tolerance > STEP_ATOL else ")"),
                            worst_mismatch(step_b, step_a), step_tolerance))
    return found, run["kink"]


def inputs_for(spec, data_path: str | None, samples: int, seed: int = 0, data_options: dict | None = None,
               random_samples: int | None = None):
    """(x, y, what they are): the first ``samples`` test images of --data, or of the bundled MNIST where the models
    take its images and classes, else ``random_samples`` (default ``samples``) random ones."""
    from . import data

    if data_path is not None or (spec.input_shape == MNIST_SHAPE and spec.num_classes == MNIST_CLASSES):
        dataset = data.load(data_path, **(data_options or {}))
        taken = dataset.subset(0, samples)
        x, y = taken.images("test"), taken.labels("test")
        if x.shape[1:] != spec.input_shape:
            raise UserError(f"the data's images are {x.shape[1:]}, the models take {spec.input_shape}")
        if dataset.num_classes > spec.num_classes:
            raise UserError(f"the data has {dataset.num_classes} classes ({dataset.source}), the models give "
                            f"{spec.num_classes} class scores; use data of their classes")
        return x, y, f"{len(x):,} test images of {dataset.source}"
    rng = np.random.default_rng(seed)
    samples = random_samples or samples
    x = (rng.standard_normal((samples, *spec.input_shape), np.float32) + 0.5).astype(np.float32)
    return x, rng.integers(0, spec.num_classes, samples), f"{samples:,} random inputs N(0.5, 1) of {spec.input_shape}"


def check(model_a, model_b, *, input_shape=None, keep_weights=False, data_path=None, samples=256, inputs=None,
          atol=None, gradients=True, adam_step=True, names=("A", "B"), data_options=None) -> CheckResult:
    """Compare two model objects (Keras models, PyTorch modules); see the module docstring. ``inputs`` (N, H, W, C)
    replace the MNIST or random ones; ``atol``, one absolute tolerance, replaces every stated one; without
    ``gradients`` only logits are compared, without ``adam_step`` no step."""
    a, b = read_pair([model_a, model_b], input_shape)
    lines = [f"{label}: {source} ({label_of(m, r)}, {len(r.spec.info)} layers, {r.spec.total_params:,} parameters"
             f"{_head(r.spec)})" for label, source, m, r in zip("AB", names, (model_a, model_b), (a, b))]
    pairs = align(a.spec, b.spec)
    table, differences = architecture_table(a, b, pairs)
    lines += ["", table, ""]
    result = CheckResult(same_architecture=not differences)
    lines.append("architecture: the same" if not differences else
                 f"architecture: differs at {len(differences)} place{'s' * (len(differences) > 1)}")
    lines += [f"  {d}" for d in differences]
    for label, r in (("A", a), ("B", b)):
        lines += [f"  note on {label}: {note}" for note in r.notes]
    if a.spec.weight_shapes() != b.spec.weight_shapes():
        lines.append("weights: their names or shapes differ, so the two cannot run with the same weights")
        result.report = "\n".join(lines + ["", "verdict: DIFFERENT architectures"])
        return result
    if keep_weights:
        lines.append("weights: each model's own (--keep-weights)")
    else:
        b.set_weights(a.get_weights())
        lines.append(f"weights: A's copied into B through the canonical layout ({len(a.spec.weight_shapes())} tensors)")
    if inputs is not None:
        x = np.asarray(inputs, np.float32)
        if x.shape[1:] != a.spec.input_shape:
            raise UserError(f"inputs of shape {x.shape}; the models take (N, {', '.join(map(str, a.spec.input_shape))})")
        y, described = np.random.default_rng(0).integers(0, a.spec.num_classes, len(x)), f"the {len(x):,} inputs given"
    else:
        x, y, described = inputs_for(a.spec, data_path, samples, data_options=data_options)
    found = None
    result.comparisons, kink = compare_numerics(a, b, x, y, gradients, adam_step)
    if atol is not None:
        result.comparisons = [Comparison(c.what, c.worst, atol) for c in result.comparisons]
    lines += ["", f"on {described}:",
              render(["compared", "worst mismatch", "tolerance", ""],
                     [[c.what, str(c.worst), f"{c.tolerance:.2g}", "ok" if c.ok else "DIFFERS"]
                      for c in result.comparisons])]
    if kink < reference.KINK_MARGIN:
        lines.append(f"  (no batch kept every ReLU input {reference.KINK_MARGIN:g} from the kink; closest {kink:.2g}: a "
                     f"gradient may differ there by rounding alone)")
    if not all(c.ok for c in result.comparisons):
        found = first_divergence(a, b, pairs, x[:GRAD_BATCH * 4])
        if found:
            result.first_divergence = found[0]
            lines.append(f"first layer whose output differs (inference mode): {found[0]}")
        else:
            lines.append("every layer's inference-mode output agrees: the difference is in training mode "
                         "(BatchNorm's batch statistics or momentum)")
    if not result.same:
        lines += [f"likely cause: {cause}" for cause in likely_causes(a, b, pairs, found[1] if found else None,
                                                                       keep_weights)]
    verdict = "the same function, within the stated tolerances" if result.same else "DIFFERENT"
    result.report = "\n".join(lines + ["", f"verdict: {verdict}"])
    return result


def run(args) -> int:
    from . import data

    if (args.b is None) == (args.twin is None):
        raise UserError("name a second model B, or --twin FRAMEWORK for twincnn's own twin of A: one of the two")
    if args.twin and args.keep_weights:
        raise UserError("--twin builds B with A's weights; --keep-weights applies to a model B of your own")
    twin = backends.canonical_name(args.twin) if args.twin else None  # an unknown name before any model loads
    # a PyTorch module takes the images of --data where no --input-shape says otherwise
    input_shape = args.input_shape or (data.load(args.data, **data.options(args)).input_shape if args.data else None)
    model_a = load_source(args.a, args.spec)
    if twin:
        model_b, name_b = TwinOf(twin), f"--twin {args.twin}"
    else:
        model_b, name_b = load_source(args.b, args.spec), args.b
    result = check(model_a, model_b, input_shape=input_shape, keep_weights=args.keep_weights, data_path=args.data,
                   samples=args.samples, names=(args.a, name_b), data_options=data.options(args))
    print(result.report)
    return 0 if result.same else 1
