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
after every run from every finished run in DIR with the same sizes, data seed and epochs (so
rows and seeds run by separate invocations, even at once, end in one table); runs already in
DIR (a summary.json) are read, not trained again. Every row's command is printed and kept in
results.json. ``--by-voice`` also writes ``DIR/voices.md``: test WER per voice of the held-out
flite and Festival.
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
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--out", default="runs/speech-ablation")
    parser.add_argument("--by-voice", action="store_true",
                        help="also decode every run's test split and write DIR/voices.md: WER per test voice")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for row in args.rows:
        for engine in args.engines:
            for seed in args.seeds:
                run_dir = out / f"{row}-{engine}-s{seed}"
                if not (run_dir / "summary.json").exists():
                    cmd = command(args, row, engine, seed, run_dir)
                    load = os.getloadavg()[0]
                    print(f"[{time.strftime('%H:%M:%S')}] load {load:.2f}: {shlex.join(cmd)}", flush=True)
                    subprocess.run([str(Path(sys.executable).with_name("rnnkit")), *cmd[1:]], check=True,
                                   stdout=subprocess.DEVNULL)
                wer = json.loads((run_dir / "summary.json").read_text())["test_wer"]
                print(f"  {row} held-out {engine} seed {seed}: test WER {wer:.4f}", flush=True)
                results = {"args": vars(args), "runs": collect(args, out)}
                (out / "results.json").write_text(json.dumps(results, indent=1))
                (out / "table.md").write_text(table(results))
    runs = collect(args, out)
    print(table({"runs": runs}))
    if args.by_voice:
        voices = voice_table(runs, out)
        (out / "voices.md").write_text(voices)
        print(voices)
    return 0


def command(args: argparse.Namespace, row: str, engine: str, seed: int, run_dir: Path) -> list[str]:
    """The ``rnnkit train speech`` command of one (recipe, held-out engine, seed)."""
    train_engines = ",".join(e for e in ENGINES if e != engine)
    return ["rnnkit", "train", "speech", "--engines", train_engines, "--held-out-engine", engine,
            "--train-size", str(args.train_size), "--val-size", str(args.val_size),
            "--test-size", str(args.test_size), "--epochs", str(args.epochs),
            "--data-seed", str(args.data_seed), "--seed", str(seed), *ROWS[row], "--out", str(run_dir)]


def collect(args: argparse.Namespace, out: Path) -> list[dict]:
    """Every finished run in ``out`` (all recipes, engines and seeds, whichever invocation trained
    it) whose data sizes, data seed and epochs are this invocation's; others are left out."""
    runs = []
    for row in ROWS:
        for engine in ENGINES:
            for seed_dir in sorted(out.glob(f"{row}-{engine}-s*"), key=lambda d: d.name):
                seed = seed_dir.name.rsplit("-s", 1)[1]
                if not seed.isdigit() or not (seed_dir / "summary.json").exists():
                    continue
                config = json.loads((seed_dir / "config.json").read_text())
                options, train = config["options"], config["train"]
                if ((options["train_size"], options["val_size"], options["test_size"], options["data_seed"],
                     train["epochs"]) != (args.train_size, args.val_size, args.test_size, args.data_seed, args.epochs)):
                    continue
                summary = json.loads((seed_dir / "summary.json").read_text())
                runs.append({"row": row, "held_out": engine, "seed": int(seed),
                             "command": shlex.join(command(args, row, engine, int(seed), seed_dir)),
                             "test_wer": summary["test_wer"], "test_cer": summary["test_cer"],
                             "best_val_wer": summary["best_val_wer"], "train_seconds": summary.get("train_seconds")})
    return runs


def voice_wers(run_dir: Path) -> dict[str, list[int]]:
    """{test voice: [word edits, words]} of one run's test split (greedy decoding), cached in
    ``run_dir/test_voices.json``."""
    cached = run_dir / "test_voices.json"
    if cached.exists():
        return json.loads(cached.read_text())
    import torch

    import rnnkit
    from rnnkit.data.datasets import spoken_digits
    from rnnkit.models.ctc import error_counts

    run = rnnkit.load(run_dir)
    data = run.task.prepare(0)["test"]
    utterances = spoken_digits.load_spoken_digits(run.task.options.data_config())["test"].utterances
    texts: dict[str, tuple[list[str], list[str]]] = {}  # voice -> (references, hypotheses)
    with torch.no_grad():
        for start in range(0, len(utterances), 64):
            batch = data.take(list(range(start, min(start + 64, len(utterances)))))
            out = run(batch["x"], batch["lengths"])
            for u, hyp in zip(utterances[start:start + 64], run.task.decode(out.log_probs, out.lengths)):
                refs, hyps = texts.setdefault(u.voice, ([], []))
                refs.append(u.text)
                hyps.append(hyp)
    counts = {}
    for voice, (refs, hyps) in texts.items():
        errors = error_counts(refs, hyps)
        counts[voice] = [errors.word_edits, errors.words]
    cached.write_text(json.dumps(counts, indent=1))
    return counts


def voice_table(runs: list[dict], out: Path) -> str:
    """Test WER per voice of the held-out flite and Festival (espeak's 136 voices are left out):
    one row per recipe, mean over its seeds."""
    parts = []
    for engine in ("flite", "festival"):
        mine = [r for r in runs if r["held_out"] == engine]
        if not mine:
            continue
        per_run = {(r["row"], r["seed"]): voice_wers(out / f"{r['row']}-{engine}-s{r['seed']}") for r in mine}
        voices = sorted(next(iter(per_run.values())))
        lines = [f"| recipe (held-out {engine}) | seeds | " + " | ".join(voices) + " |",
                 "|---|---:|" + "---:|" * len(voices)]
        for row in dict.fromkeys(r["row"] for r in mine):
            seeds = [c for (name, _), c in per_run.items() if name == row]
            cells = [f"{statistics.fmean(c[v][0] / c[v][1] for c in seeds):.3f}" for v in voices]
            lines.append(f"| {row} | {len(seeds)} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


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
