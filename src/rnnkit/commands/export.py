"""``rnnkit export RUN --format onnx|pt2 [--step] --out model.onnx``: a trained run's model as an
ONNX file (``torch.onnx.export(dynamo=True)``) or an AOTInductor package (``pt2``).

The graph has dynamic batch and time axes; ``--lengths`` / ``--no-lengths`` choose whether it
takes a ``lengths`` input (default: the task's, as its ``export`` declaration says). A seq2seq
run (translate) writes two graphs, ``<stem>.encoder.onnx`` and ``<stem>.decoder.onnx`` (one
decoder step). ``--step`` writes the recurrent stack as one time step instead, the state in and
out (x_t, h [, c] -> y_t, h_n [, c_n]), the form for streaming on an edge runtime. Each file is
checked with onnxruntime (a pt2 package: by loading it) against rnnkit before the command
reports it (``--no-verify`` skips that). Inputs, outputs and limits per task: docs/export.md.
The work is ``rnnkit.exporting.export_onnx``'s (by task), over ``rnnkit.export`` (by model).
"""
from __future__ import annotations

import argparse

from ..export import FORMATS, MIN_OPSET, OPSET

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run directory (from rnnkit train)")
    parser.add_argument("--format", choices=FORMATS, default="onnx",
                        help="onnx (default) or pt2 (an AOTInductor package, compiled C++; needs a C++ compiler)")
    parser.add_argument("--out", metavar="FILE", help="the file to write (default RUN/model.onnx, RUN/model.step.onnx "
                                                      "with --step; .pt2 for --format pt2)")
    parser.add_argument("--step", action="store_true",
                        help="write the recurrent stack as one time step, the state in and out (x_t, h [, c] -> "
                             "y_t, h_n [, c_n]): for streaming; unidirectional models only")
    parser.add_argument("--lengths", action=argparse.BooleanOptionalAction, default=None,
                        help="give the graph a lengths input (B,) (default: the task's; yes for sentiment, tagging, "
                             "speech, translate)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset version (default {OPSET})")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check against rnnkit")


def run(args) -> int:
    from pathlib import Path

    from ..exporting import export_onnx

    if args.opset < MIN_OPSET:
        raise ValueError(f"export: --opset must be >= {MIN_OPSET} (the opset torch.onnx's dynamo exporter writes), "
                         f"got {args.opset}")
    default = f"model{'.step' if args.step else ''}.{args.format}"
    out = Path(args.out) if args.out else Path(args.run_dir) / default
    if not Path(args.run_dir).is_dir():
        raise ValueError(f"export: run directory {args.run_dir} does not exist")
    runtime = "the package" if args.format == "pt2" else "onnxruntime"
    for info in export_onnx(args.run_dir, out, lengths=args.lengths, opset=args.opset, verify=not args.no_verify,
                            step=args.step, format=args.format):
        check = ("not verified" if info.max_abs_diff is None
                 else f"{runtime} agrees with rnnkit within {info.max_abs_diff:.2g}")
        part = f" ({info.part})" if info.part else ""
        print(f"wrote {info.path}{part}: inputs {', '.join(info.inputs)}; outputs {', '.join(info.outputs)}; {check}")
    return 0
