"""``rnnkit export RUN --format onnx --out model.onnx``: a trained run's model as an ONNX file.

The graph has dynamic batch and time axes; ``--lengths`` / ``--no-lengths`` choose whether it
takes a ``lengths`` input (default: the task's, as its ``export`` declaration says). A seq2seq
run (translate) writes two graphs, ``<stem>.encoder.onnx`` and ``<stem>.decoder.onnx`` (one
decoder step). Each file is checked with onnxruntime against rnnkit before the command
reports it (``--no-verify`` skips that). Inputs, outputs and limits per task: docs/export.md.
The work is ``rnnkit.exporting.export_onnx``'s (by task), over ``rnnkit.export`` (by model).
"""
from __future__ import annotations

import argparse

from ..export import MIN_OPSET, OPSET

__all__ = ["add_arguments", "run"]

FORMATS = ("onnx",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run directory (from rnnkit train)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="file format (default onnx)")
    parser.add_argument("--out", metavar="FILE", help="the file to write (default RUN/model.onnx)")
    parser.add_argument("--lengths", action=argparse.BooleanOptionalAction, default=None,
                        help="give the graph a lengths input (B,) (default: the task's; yes for sentiment, tagging, "
                             "speech, translate)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset version (default {OPSET})")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check against rnnkit")


def run(args) -> int:
    from pathlib import Path

    from ..exporting import export_onnx

    if args.opset < MIN_OPSET:
        raise ValueError(f"export: --opset must be >= {MIN_OPSET} (ONNX LSTM/GRU with layouts rnnkit needs), "
                         f"got {args.opset}")
    out = Path(args.out) if args.out else Path(args.run_dir) / "model.onnx"
    if not Path(args.run_dir).is_dir():
        raise ValueError(f"export: run directory {args.run_dir} does not exist")
    for info in export_onnx(args.run_dir, out, lengths=args.lengths, opset=args.opset, verify=not args.no_verify):
        check = ("not verified" if info.max_abs_diff is None
                 else f"onnxruntime agrees with rnnkit within {info.max_abs_diff:.2g}")
        part = f" ({info.part})" if info.part else ""
        print(f"wrote {info.path}{part}: inputs {', '.join(info.inputs)}; outputs {', '.join(info.outputs)}; {check}")
    return 0
