"""Speech on unseen synthesisers: word error rate per held-out engine, with and without each
ingredient of the training data (issue 17).

Each row is a recipe; each (row, held-out engine, seed) is one ``rnnkit train speech`` run that
trains on the other two engines and validates and tests on the held-out one. The data are fixed
by ``--data-seed`` (the same utterances for every seed), the training seed changes the weights,
the order and the SpecAugment masks.

    python benchmarks/speech_ablation.py --rows voices channel channel+spec --seeds 0 1 2 \\
        --out runs/speech-ablation

writes ``DIR/<row>-<engine>-s<seed>/`` (run directories), ``DIR/results.json`` and
``DIR/table.md`` (test WER per held-out engine: mean over seeds, and each seed's), rewritten
after every run; runs already in DIR (a summary.json) are read, not trained again. Every row's
command is printed and kept in results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENGINES = ("espeak", "flite", "festival")
# recipe name -> extra flags of `rnnkit train speech`
ROWS = {
    "voices": [],  # the other two engines' voices, clean audio
    "channel": ["--augment", "all"],  # + every channel ingredient
    "channel+spec": ["--augment", "all", "--spec-augment"],  # + SpecAugment
    "channel+spec-telephone": ["--augment", "speed,pitch,reverb,noise", "--spec-augment"],
    "channel+spec-noise": ["--augment", "speed,pitch,reverb,telephone", "--spec-augment"],
    "channel+spec-reverb": ["--augment", "speed,pitch,noise,telephone", "--spec-augment"],
    "channel+spec-speed-pitch": ["--augment", "reverb,noise,telephone", "--spec-augment"],
    "channel+spec-normalize": ["--augment", "all", "--spec-augment", "--no-normalize"],
    "channel+spec+narrowband": ["--augment", "all", "--spec-augment", "--max-frequency", "3800"],  # bands <= 3.8 kHz
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=["voices", "channel", "channel+spec"], choices=list(ROWS))
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES, help="held-out engines")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=200)
    parser.add_argument("--test-size", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--out", default="runs/speech-ablation")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rnnkit = str(Path(sys.executable).with_name("rnnkit"))
    results = {"args": vars(args), "runs": []}
    for row in args.rows:
        for engine in args.engines:
            for seed in args.seeds:
                run_dir = out / f"{row}-{engine}-s{seed}"
                train_engines = ",".join(e for e in ENGINES if e != engine)
                cmd = [rnnkit, "train", "speech", "--engines", train_engines, "--held-out-engine", engine,
                       "--train-size", str(args.train_size), "--val-size", str(args.val_size),
                       "--test-size", str(args.test_size), "--epochs", str(args.epochs),
                       "--data-seed", str(args.data_seed), "--seed", str(seed), *ROWS[row], "--out", str(run_dir)]
                line = " ".join(shlex.quote(c) for c in ["rnnkit", *cmd[1:]])
                if not (run_dir / "summary.json").exists():
                    load = os.getloadavg()[0]
                    print(f"[{time.strftime('%H:%M:%S')}] load {load:.2f}: {line}", flush=True)
                    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                summary = json.loads((run_dir / "summary.json").read_text())
                results["runs"].append({"row": row, "held_out": engine, "seed": seed, "command": line,
                                        "test_wer": summary["test_wer"], "test_cer": summary["test_cer"],
                                        "best_val_wer": summary["best_val_wer"],
                                        "train_seconds": summary.get("train_seconds")})
                print(f"  {row} held-out {engine} seed {seed}: test WER {summary['test_wer']:.4f}", flush=True)
                (out / "results.json").write_text(json.dumps(results, indent=1))
                (out / "table.md").write_text(table(results))
    print(table(results))
    return 0


def table(results: dict) -> str:
    """Test WER: one row per recipe, one column per held-out engine (mean over seeds [each seed])."""
    runs = results["runs"]
    engines = [e for e in ENGINES if any(r["held_out"] == e for r in runs)]
    lines = ["| recipe | " + " | ".join(f"held-out {e}: test WER" for e in engines) + " | mean |",
             "|---|" + "---:|" * (len(engines) + 1)]
    for row in dict.fromkeys(r["row"] for r in runs):
        cells, means = [], []
        for e in engines:
            wers = [r["test_wer"] for r in runs if r["row"] == row and r["held_out"] == e]
            if not wers:
                cells.append("")
                continue
            means.append(statistics.fmean(wers))
            cells.append(f"{means[-1]:.3f} [{', '.join(f'{w:.3f}' for w in wers)}]")
        mean = f"{statistics.fmean(means):.3f}" if len(means) == len(engines) else ""
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
