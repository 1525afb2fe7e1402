"""``rnnkit inspect RUN``: what the units of a character language model do while reading a text.

Writes one self-contained HTML page (``--out``; nothing in it is fetched from the network):
the text coloured character by character by a chosen unit, a unit picker, the gates of that
unit and of its layer over time, and the units that best follow simple features of the text
(position in line, inside quotes, inside brackets). ``--png DIR`` draws the heatmaps as PNG
files too; ``--gradients`` adds the gradient-flow plot of ``rnnkit.viz.gradients``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CHARS = 1000  # read from the run's validation text when no --text is given


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a charlm run directory")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--text", help="the text to read (default: --length characters of the run's validation "
                                     "text, from --start)")
    text.add_argument("--text-file", metavar="PATH", help="read the text from a UTF-8 file")
    parser.add_argument("--start", type=_non_negative_int, default=0,
                        help="without --text: where in the validation text to start (default 0)")
    parser.add_argument("--length", type=_positive_int, default=DEFAULT_CHARS,
                        help=f"without --text: how many characters to read (default {DEFAULT_CHARS})")
    parser.add_argument("--out", metavar="FILE", default="report.html", help="the HTML report (default report.html)")
    parser.add_argument("--png", metavar="DIR", help="also write PNG heatmaps into DIR")
    parser.add_argument("--unit", type=_non_negative_int, help="the unit shown first (default: the one that best "
                                                               "follows a text feature)")
    parser.add_argument("--layer", type=int, default=-1,
                        help="the layer of --unit, counting directions (layer * D + direction); default the last")
    parser.add_argument("--max-units", type=_positive_int, default=128,
                        help="units the page carries at most, over all layers (default 128)")
    parser.add_argument("--max-chars", type=_positive_int, default=2000, help="longest text accepted (default 2000)")
    parser.add_argument("--gradients", action="store_true", help="add the gradient-flow plot (rnnkit.viz.gradients)")


def run(args) -> int:
    from ..runs import load
    from ..viz.inspect import gradients_png, inspect_text, write_html, write_pngs

    run_model = load(args.run_dir)
    task = run_model.task
    if task.name != "charlm":  # (every task has a generate and several a vocab: only charlm reads characters)
        raise ValueError(f"inspect: RUN must be a character language model run (charlm), got a {task.name} run")
    text = _text(args, task, run_model.config)
    title = f"{Path(args.run_dir).name}: {task.name}, {_model_line(run_model.config)}"
    inspection = inspect_text(run_model.model, task.vocab, text, title=title, max_chars=args.max_chars)
    if args.gradients:
        inspection.gradients_png = gradients_png(run_model.model, task, text, task.vocab)
    out = write_html(inspection, args.out, unit=args.unit, layer=args.layer, max_units=args.max_units)
    print(f"inspect: wrote {out} ({out.stat().st_size // 1024} KB, {len(text)} characters)")
    if args.png:
        paths = write_pngs(inspection, args.png, unit=args.unit, layer=args.layer)
        if inspection.gradients_png is not None:
            paths.append(Path(args.png) / "gradient_flow.png")
            paths[-1].write_bytes(inspection.gradients_png)
        print(f"inspect: wrote {', '.join(str(p) for p in paths)}")
    return 0


def _text(args, task, config: dict) -> str:
    if args.text is not None:
        return args.text
    if args.text_file is not None:
        try:
            return Path(args.text_file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"inspect: --text-file {args.text_file} does not exist") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"inspect: --text-file {args.text_file} is not UTF-8 text ({e})") from None
    meta = dict(task.meta)
    val = task.prepare(config["train"]["seed"])["val"]  # the text the run never trained on
    task.meta = meta  # keep the vocabulary the model was trained with
    ids = val.tensors["ids"]  # (N,)
    if args.start >= len(ids):
        raise ValueError(f"inspect: --start must be below the validation text's {len(ids)} characters, got {args.start}")
    return "".join(task.vocab.decode(ids[args.start : args.start + args.length].tolist()))


def _model_line(config: dict) -> str:
    o = config.get("options", {})
    return f"{o.get('cell', '?')} {o.get('num_layers', '?')}x{o.get('hidden_size', '?')}"


def _int_at_least(minimum: int, wanted: str):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return convert


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")
