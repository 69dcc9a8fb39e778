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


def _positive_ints(names: str, example: str):
    """An argparse type: comma-separated positive integers, as many as ``names`` ("H,W,C") has, e.g. '28,28,1'."""
    count = len(names.split(","))

    def parse(text):
        try:
            values = tuple(int(part) for part in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count or min(values) < 1:
            raise argparse.ArgumentTypeError(f"expected {names} ({count} positive integers, e.g. {example}), "
                                             f"got {text!r}")
        return values
    return parse


_image_size = _positive_ints("H,W", "32,32")
_input_shape = _positive_ints("H,W,C", "28,28,1")


def add_data_options(parser) -> None:
    """An image folder's colour mode and image size, for every command that reads --data."""
    parser.add_argument("--color-mode", choices=("grayscale", "rgb", "rgba"),
                        help="an image folder's colour mode (default: grayscale where every image is, else rgb)")
    parser.add_argument("--image-size", type=_image_size, metavar="H,W",
                        help="resize an image folder's images to H,W (bilinear); needed where their sizes differ")


def cmd_summary(args) -> int:
    from .zoo import load_spec
    from .summary import summarize

    text, agree = summarize(load_spec(args.spec), _frameworks(args.frameworks) if args.frameworks else None)
    print(text)
    return 0 if agree else 1


def cmd_data(args) -> int:
    from . import data
    from .tables import render

    def number(value) -> str:
        return str(value) if isinstance(value, int) else f"{value:.4g}"

    def channel_row(split: str, channel: int, s: dict, scaled: bool) -> list:
        """One channel's pixel statistics: pixels 0..255 (and what the model sees: / 255), or model inputs."""
        mean, std = s["pixel_mean"][channel], s["pixel_std"][channel]
        spread = "{:.3f}" if scaled else "{:.4g}"
        row = [split, channel, number(s["pixel_min"][channel]), number(s["pixel_max"][channel]),
               spread.format(mean), spread.format(std)]
        return row + ([f"{mean / 255:.4f}", f"{std / 255:.4f}"] if scaled else [])

    stats = data.load(args.data, color_mode=args.color_mode, image_size=args.image_size).stats()
    h, w, c = stats["shape"]
    print(f"source:       {stats['source']}")
    print(f"sha256:       {stats['sha256']}" + ("  (verified)" if args.data is None else ""))
    print(f"layout:       {stats['layout']}")
    print(f"images:       {h}x{w}x{c} (height x width x channels), {len(stats['class_names'])} classes")
    print(f"pixel scale:  {stats['pixel_scale']}")
    for note in stats["notes"]:
        print(f"note:         {note}")
    print()
    splits = ("train", "test")
    print(render(["split", "images", "labels"], [[k, f"{stats[k]['images']:,}", f"{stats[k]['labels']:,}"]
                                                 for k in splits]))
    print()
    print("class balance")
    print(render(["class", "name"] + list(splits),
                 [[k, name] + [f"{stats[split]['class_counts'][k]:,}" for split in splits]
                  for k, name in enumerate(stats["class_names"])]))
    print()
    scaled = stats["pixel_scale"] == "uint8 / 255"
    print("pixels per channel" + (" (mean and std also / 255, as the model sees them)" if scaled else ""))
    print(render(["split", "channel", "min", "max", "mean", "std"] + (["mean / 255", "std / 255"] if scaled else []),
                 [channel_row(split, ch, stats[split], scaled) for split in splits for ch in range(c)]))
    return 0


def cmd_audit(args) -> int:
    from .audit import audit_table

    print(audit_table(markdown=args.markdown))
    return 0


def cmd_port(args) -> int:
    from .port import port

    from .data import options

    return port(args.source, args.dest, spec_path=args.spec, data_path=args.data, tolerance=args.tolerance,
                data_options=options(args))


def cmd_check(args) -> int:
    from .check import run

    return run(args)


def cmd_report(args) -> int:
    from .report import merge

    return merge(args.dirs, args.out)


def cmd_spec(args) -> int:
    from .sources import read_source

    read = read_source(args.source, args.spec, args.input_shape)
    print(read.spec.to_json(), end="")
    for note in read.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


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
    parser.add_argument("--verbose", action="store_true",
                        help="show the frameworks' start-up notices and every worker's output as it comes")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="per-layer output shapes and parameter counts: spec vs built models")
    p.add_argument("--spec", help="a JSON spec file (default: the notebook's CNN)")
    p.add_argument("--frameworks", help="comma-separated, or all (every installed twin); default: the installed "
                                        "native twins (tensorflow, torch, jax)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("data", help="where the data came from, counts, class balance, pixels, checksum")
    p.add_argument("--data", help="an .npz of x_train, y_train, x_test, y_test (and class_names), an image folder "
                                  "(train/ and test/ with a folder per class), a CIFAR-10 or -100 directory as "
                                  "extracted (binary or Python version), or a directory of MNIST IDX files "
                                  "(default: the bundled MNIST)")
    add_data_options(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("audit", help="framework defaults that differ and change results or timing")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("port", help="move weights between .keras, .pt, .msgpack and .safetensors, verified on "
                                     "logits")
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--spec", help="the spec of WEIGHTS.pt (default: the notebook's CNN)")
    p.add_argument("--data", help="the dataset whose test images verify the logits (default: the bundled MNIST "
                                  "where the model takes its images and classes, else random inputs)")
    add_data_options(p)
    p.add_argument("--tolerance", type=_positive_float, default=1e-4, help="max |Δlogit| allowed (1e-4)")
    p.set_defaults(func=cmd_port)

    p = sub.add_parser("check", help="are two models of your own (Keras, PyTorch) the same function? layer by "
                                      "layer, logits, gradients, one Adam step")
    p.add_argument("a", metavar="A",
                   help="a saved model (.keras; .pt or .safetensors with --spec) or path/to/file.py:factory")
    p.add_argument("b", metavar="B", nargs="?",
                   help="the same for the other model; A's weights are copied into it (or --twin FRAMEWORK)")
    p.add_argument("--keep-weights", action="store_true", help="compare the two with their own weights")
    p.add_argument("--input-shape", type=_input_shape,
                   help="H,W,C of the image a PyTorch module takes (default: the other model's, else 28,28,1)")
    p.add_argument("--data", help="a dataset (as compare's --data) whose test images are compared (default: "
                                  "bundled MNIST where the models take its images and classes, random inputs "
                                  "otherwise)")
    add_data_options(p)
    p.add_argument("--twin", metavar="FRAMEWORK",
                   help="instead of B: twincnn's twin of A's spec in FRAMEWORK, with A's weights copied in")
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
    p.add_argument("--frameworks", help="comma-separated, or all (every installed twin, the Keras ones on JAX and "
                                        "PyTorch too); default: the installed native twins (tensorflow, torch, "
                                        "jax); the same one twice (torch,torch) is the A/A self-test")
    p.add_argument("--threads", type=_positive_int, help="intra-op threads for every framework (default: all cores)")
    p.add_argument("--ranks", type=_positive_int, default=1,
                   help="also train each framework data-parallel on its own distributed engine, as this many "
                        "processes sharing --threads; reports each one's scaling and judges them against each "
                        "other (default 1: one process each)")
    p.add_argument("--precision", type=_fraction, metavar="P",
                   help="after the planned repeats, add repeats until every verdict's CI is within ±P of its ratio "
                        "(e.g. 0.03), or another repeat would pass --max-minutes; the run says which")
    p.add_argument("--max-minutes", type=_positive_float, metavar="M",
                   help="with --precision: the minutes of training the repeats may take (default 30)")
    p.add_argument("--noise-threshold", type=_fraction, default=0.03,
                   help="a time ratio within 1 ± this is 'within noise' (default 0.03)")
    p.add_argument("--data", help="an .npz, an image folder (train/ and test/ with a folder per class), CIFAR-10 "
                                  "or -100, or MNIST IDX files (default: bundled MNIST)")
    add_data_options(p)
    p.add_argument("--spec", help="a JSON spec file or zoo:NAME (default: the notebook's CNN, built for the data's "
                                  "images and classes); with --model, the spec of a weights-only file")
    p.add_argument("--model", metavar="SRC",
                   help="your model (.keras; path/to/file.py:factory giving a Keras model or a PyTorch module; "
                        ".pt or .safetensors with --spec): every framework's twin is built from its architecture")
    p.add_argument("--keep-weights", action="store_true",
                   help="every repeat starts from --model's own weights (default: canonical weights from the seed)")
    p.add_argument("--min-accuracy", type=_fraction, metavar="P",
                   help="exit 1, naming each framework, where its median test accuracy is below P (e.g. 0.95)")
    p.add_argument("--out", help="results directory (default: results/<machine-id>/<UTC time>-<commit>/)")
    p.add_argument("--quick", action="store_true", help="demo: the first 12,000/2,000 images (the report says so)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--no-floor", action="store_true",
                   help="skip measuring the matmul floor (a CPU rate: --device cuda never measures it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("spec", help="the graph spec twincnn reads from a model of yours (what compare --model "
                                     "builds its twins from)")
    p.add_argument("source", metavar="SRC",
                   help="a saved model (.keras; .pt or .safetensors with --spec) or path/to/file.py:factory")
    p.add_argument("--input-shape", type=_input_shape,
                   help="H,W,C of the image a PyTorch module takes (default 28,28,1)")
    p.add_argument("--spec", help="the spec of a weights-only file such as WEIGHTS.pt")
    p.set_defaults(func=cmd_spec)

    p = sub.add_parser("report", help="merge results directories (from one or many machines) into one page and figure")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="results directories, or folders holding them")
    p.add_argument("--out", default="report", help="where report.md and report.png go (default: report/)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    """Run one command; every failure ends in one line on stderr: bad input and errors in the user's own code
    (after its frames) exit 2, a child process's bug (after its traceback) 1, Ctrl-C 130. A bad argument is
    argparse's error line alone (its usage, many lines for some commands, is left to --help)."""
    import contextlib
    import io

    from . import quiet, usercode
    from .errors import ProcessFailed

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            args = build_parser().parse_args(argv)
    except SystemExit as exc:
        lines = said.getvalue().strip().splitlines()
        if exc.code and lines:
            print(f"{lines[-1]} (see --help)", file=sys.stderr)
        raise
    quiet.start(verbose=args.verbose)  # before any framework or user code is imported
    try:
        return args.func(args)
    except UserError as exc:
        print(f"twincnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ProcessFailed as exc:
        print(f"twincnn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"twincnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        blamed = usercode.blame(exc)
        if blamed is None:
            raise  # twincnn's bug: its whole traceback
        frames, call = blamed
        sys.stderr.write(frames)
        print(f"twincnn {args.command}: error: {call} raised {type(exc).__name__} (traceback above)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
