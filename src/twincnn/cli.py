"""The `twincnn` command. Each subcommand lives in its own module, imported only when run."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import UserError


def _int_at_least(minimum: int, what: str):
    """An argparse type: a whole number >= ``minimum``, refused in one line that says ``what`` it wants."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_count = _int_at_least(0, "a whole number >= 0")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def cmd_summary(args) -> int:
    from .zoo import load_spec
    from .summary import summarize

    text, agree = summarize(load_spec(args.spec), _frameworks(args.frameworks) if args.frameworks else None)
    print(text)
    return 0 if agree else 1


def cmd_data(args) -> int:
    from . import data
    from .tables import render

    stats = data.load(args.data).stats()
    print(f"source:   {stats['source']}")
    print(f"sha256:   {stats['sha256']}" + ("  (verified)" if args.data is None else ""))
    rows = [[split, f"{s['images']:,}", f"{s['labels']:,}", f"{s['pixel_min']}..{s['pixel_max']}",
             f"{s['pixel_mean']:.3f} ({s['pixel_mean'] / 255:.4f})"] for split, s in
            ((k, stats[k]) for k in ("train", "test"))]
    print(render(["split", "images", "labels", "pixels", "mean pixel (0..1)"], rows))
    print()
    print("class balance")
    print(render(["split"] + [str(c) for c in range(10)],
                 [[split] + [f"{n:,}" for n in stats[split]["class_counts"]] for split in ("train", "test")]))
    return 0


def cmd_audit(args) -> int:
    from .audit import audit_table

    print(audit_table(markdown=args.markdown))
    return 0


def cmd_port(args) -> int:
    from .port import port

    return port(args.source, args.dest, spec_path=args.spec, data_path=args.data, tolerance=args.tolerance)


def cmd_check(args) -> int:
    from .check import run

    return run(args)


def _input_shape(text):
    """'28,28,1' -> (28, 28, 1): height, width, channels."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W,C (three positive integers, e.g. 28,28,1), got {text!r}")
    return shape


def cmd_report(args) -> int:
    from .report import merge

    return merge(args.dirs, args.out)


def cmd_compare(args) -> int:
    from .compare.command import run

    return run(args)


def _frameworks(text):
    from .backends import parse_list

    return parse_list(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twincnn",
        description="One CNN spec, a twin in each framework: proven equal, timed fairly.")
    parser.add_argument("--version", action="version", version=f"twincnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="per-layer output shapes and parameter counts: spec vs built models")
    p.add_argument("--spec", help="a JSON spec file (default: the notebook's CNN)")
    p.add_argument("--frameworks", help="comma-separated, default: every installed one")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("data", help="where the data came from, counts, class balance, pixels, checksum")
    p.add_argument("--data", help="an MNIST-layout .npz or a directory of MNIST IDX files (default: bundled)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("audit", help="framework defaults that differ and change results or timing")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("port", help="move weights between .keras, .pt, .msgpack and .safetensors, verified on MNIST")
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--spec", help="the spec of WEIGHTS.pt (default: the notebook's CNN)")
    p.add_argument("--data", help="dataset to verify logits on (default: bundled MNIST)")
    p.add_argument("--tolerance", type=_positive_float, default=1e-4, help="max |Δlogit| allowed (1e-4)")
    p.set_defaults(func=cmd_port)

    p = sub.add_parser("check", help="are two models of your own (Keras, PyTorch) the same function? layer by "
                                      "layer, logits, gradients, one Adam step")
    p.add_argument("a", metavar="A",
                   help="a saved model (.keras; .pt or .safetensors with --spec) or path/to/file.py:factory")
    p.add_argument("b", metavar="B", help="the same for the other model; A's weights are copied into it")
    p.add_argument("--keep-weights", action="store_true", help="compare the two with their own weights")
    p.add_argument("--input-shape", type=_input_shape,
                   help="H,W,C of the image a PyTorch module takes (default: the other model's, else 28,28,1)")
    p.add_argument("--data", help="an MNIST-layout .npz or IDX directory (default: bundled MNIST where the "
                                  "input is 28x28x1, random inputs otherwise)")
    p.add_argument("--samples", type=_positive_int, default=256, help="inputs compared (default 256)")
    p.add_argument("--spec", help="the spec of a weights-only file such as WEIGHTS.pt (default: the notebook's CNN)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compare", help="train the twins, one process each, taking turns block by block; a verdict with a CI")
    p.add_argument("--protocol", choices=("fair", "notebook"), default="fair")
    p.add_argument("--variant", choices=("idiomatic", "tuned"), default="tuned")
    p.add_argument("--epochs", type=_positive_int,
                   help="epochs per run (default 1; 2 where epochs are whole, the first being warm-up)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--lr", type=_positive_float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeats", type=_positive_int,
                   help="fresh worker processes per framework, seeds seed, seed+1, ... (default 4)")
    p.add_argument("--block-steps", type=_count,
                   help="steps each worker trains before the next takes its turn (default: a ninth of an epoch; "
                        "0: whole epochs); "
                        "the fair protocol on the CPU only")
    p.add_argument("--frameworks", help="comma-separated, default: every installed one; the same one twice "
                                        "(torch,torch) is the A/A self-test")
    p.add_argument("--threads", type=_positive_int, help="intra-op threads for every framework (default: all cores)")
    p.add_argument("--ranks", type=_positive_int, default=1,
                   help="also train each framework data-parallel on its own distributed engine, as this many "
                        "processes sharing --threads; reports each one's scaling and judges them against each "
                        "other (default 1: one process each)")
    p.add_argument("--noise-threshold", type=_fraction, default=0.03,
                   help="a time ratio within 1 ± this is 'within noise' (default 0.03)")
    p.add_argument("--data", help="an MNIST-layout .npz or IDX directory (default: bundled MNIST)")
    p.add_argument("--spec", help="a JSON spec file (default: the notebook's CNN)")
    p.add_argument("--out", help="results directory (default: results/<machine-id>/<UTC time>-<commit>/)")
    p.add_argument("--quick", action="store_true", help="demo: the first 12,000/2,000 images (the report says so)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--no-floor", action="store_true",
                   help="skip measuring the matmul floor (a CPU rate: --device cuda never measures it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="merge results directories (from one or many machines) into one page and figure")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="results directories, or folders holding them")
    p.add_argument("--out", default="report", help="where report.md and report.png go (default: report/)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"twincnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"twincnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
