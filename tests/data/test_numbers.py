"""Number-word pairs, the held-out split, and the tab-separated parallel reader."""
import pytest

from rnnkit.data.datasets.numbers import number_pairs, parse_int_list, read_parallel_tsv, split_numbers

pytest.importorskip("num2words", reason="the default translate data needs num2words (pip install num2words)")


def test_number_pairs_are_num2words_english_and_french():
    pairs = number_pairs([205, 71, 80, 21, 1100, 99999])
    assert pairs.sources == ["two hundred and five", "seventy-one", "eighty", "twenty-one",
                             "one thousand, one hundred", "ninety-nine thousand, nine hundred and ninety-nine"]
    assert pairs.targets == ["deux cent cinq", "soixante et onze", "quatre-vingts", "vingt et un", "mille cent",
                             "quatre-vingt-dix-neuf mille neuf cent quatre-vingt-dix-neuf"]
    with pytest.raises(ValueError, match="number_pairs: target_lang must be a language num2words knows.*'xx'"):
        number_pairs([1], target_lang="xx")


def test_split_holds_out_blocks_and_endings():
    split = split_numbers(9999, test_blocks=[3], test_endings=["77"], val_blocks=[5], val_endings=["38"])
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert train | val | test == set(range(10000)) and not (train & val or train & test or val & test)
    assert test == set(range(3000, 4000)) | {n for n in range(10000) if n % 100 == 77}
    # 5,077 ends in 77 (test), 3,038 is in block 3 (test): test wins over val.
    assert val == (set(range(5000, 6000)) | {n for n in range(10000) if n % 100 == 38}) - test
    assert 5077 in test and 3038 in test and 38 in val and 138 in val
    # The pieces of the held-out numbers are seen in other positions: "three" at the end, "seventy-seven"
    # in the middle (7,700).
    assert {3, 300, 2003, 7700} <= train
    groups = dict(zip(split.test, split.test_groups))
    assert groups[3000] == 1 and groups[177] == 2 and groups[3077] == 3
    assert dict(zip(split.val, split.val_groups))[5001] == 1 and len(split.val_groups) == len(split.val)
    assert split == split_numbers(9999, [3], ["77"], [5], ["38"])  # no randomness


def test_an_ending_matches_digits_not_values():
    split = split_numbers(999, test_blocks=[], test_endings=["05"], val_blocks=[], val_endings=["9"])
    assert split.test == [n for n in range(100, 1000) if n % 100 == 5]  # 5 is "5", not "05"
    assert 5 in split.train and set(split.val) == {n for n in range(1000) if n % 10 == 9}


@pytest.mark.parametrize("kwargs, words", [
    (dict(max_number=500), "max_number must be an int >= 999, got 500"),
    (dict(test_blocks=[10]), r"test_blocks must lie in 0..9 \(max_number 9999\), got \[10\]"),
    (dict(val_blocks=[3]), r"a block cannot be held out for both test and val, got \[3\]"),
    (dict(val_endings=["x7"]), r"val_endings must be strings of digits, got \['x7'\]"),
    (dict(val_blocks=[], val_endings=[]), "the val split is empty"),
])
def test_split_rejects_bad_arguments(kwargs, words):
    args = dict(max_number=9999, test_blocks=[3], test_endings=["77"], val_blocks=[5], val_endings=["38"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"split_numbers: {words}"):
        split_numbers(**args)


def test_parse_int_list():
    assert parse_int_list("T", "blocks", " 23, 58 ,") == [23, 58] and parse_int_list("T", "blocks", "") == []
    with pytest.raises(ValueError, match="T: blocks must be comma-separated non-negative integers, got '2;3'"):
        parse_int_list("T", "blocks", "2;3")


# -- the tab-separated reader ---------------------------------------------------------------

def test_tsv_reader_reads_pairs_and_skips_blank_lines(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("two hundred and five\tdeux cent cinq\n\n  seventy-one \t soixante et onze\r\n", encoding="utf-8")
    pairs = read_parallel_tsv(path)
    assert pairs.sources == ["two hundred and five", "seventy-one"]
    assert pairs.targets == ["deux cent cinq", "soixante et onze"]


@pytest.mark.parametrize("content, line, words", [
    ("one\tun\ntwo deux\n", 2, "expected a source and a target separated by one tab, got no tab: 'two deux'"),
    ("one\tun\n\nthree\ttrois\textra\n", 3, "expected a source and a target separated by one tab, got 2 tabs"),
    ("one\tun\n\tdeux\n", 2, "the source is empty"),
    ("one\t  \n", 1, "the target is empty"),
])
def test_tsv_malformed_lines_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"read_parallel_tsv: .*bad.tsv line {line}: {words}"):
        read_parallel_tsv(path)


def test_tsv_reader_rejects_missing_empty_and_binary_files(tmp_path):
    with pytest.raises(ValueError, match="missing.tsv does not exist"):
        read_parallel_tsv(tmp_path / "missing.tsv")
    (tmp_path / "empty.tsv").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.tsv holds no pairs"):
        read_parallel_tsv(tmp_path / "empty.tsv")
    (tmp_path / "latin1.tsv").write_bytes("caf\xe9\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.tsv is not UTF-8 text"):
        read_parallel_tsv(tmp_path / "latin1.tsv")
