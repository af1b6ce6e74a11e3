"""Text readers, tokenisation, bucketed batching and the variable-length text RNN (fixtures)."""

from __future__ import annotations

import csv
import tarfile
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from torch.nn.utils.rnn import pack_padded_sequence

from dltrain.data.batches import TokenBatches, TokenDataset
from dltrain.errors import ConfigError
from dltrain.models.varlen import CELLS, VarLengthRNN
from dltrain.registry import DATASETS, MODELS
from dltrain.train import run

from .helpers import BAD, FAST, GOOD, SHARED, compose_config, make_imdb
from .helpers import dataset_options as options


def test_imdb_reads_the_folder_and_the_tar_gz_alike(tmp_path: Path) -> None:
    folder = make_imdb(tmp_path)
    with tarfile.open(tmp_path / "imdb.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="aclImdb")
    from_folder = DATASETS.build("imdb", options("imdb", path=str(folder), val_fraction=0.25))
    from_tar = DATASETS.build(
        "imdb", options("imdb", path=str(tmp_path / "imdb.tar.gz"), val_fraction=0.25)
    )
    for data in (from_folder, from_tar):
        assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 12)
        assert data.meta.task == "binary" and data.meta.class_names == ["neg", "pos"]
    assert sorted(map(str, from_folder.train.ids)) == sorted(map(str, from_tar.train.ids))


def test_tokenizer_is_trained_on_train_only_and_kept_in_meta(tmp_path: Path) -> None:
    data = DATASETS.build("imdb", options("imdb", path=str(make_imdb(tmp_path)), min_frequency=1))
    vocab = data.meta.vocab
    assert vocab[:2] == ["[PAD]", "[UNK]"] and "wonderful" in vocab
    tokenizer = Tokenizer.from_str(data.meta.preprocessing["tokenizer"])
    ids = tokenizer.encode("A WONDERFUL zebra").ids
    assert [vocab[i] for i in ids] == ["a", "wonderful", "[UNK]"]  # lowercased, unknown -> [UNK]


@pytest.mark.parametrize("kind", ["word", "wordpiece", "bpe"])
def test_tokenizer_kinds(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "data.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([(t, "good") for t in GOOD * 3] + [(t, "bad") for t in BAD * 3])
    data = DATASETS.build(
        "text_csv", options("text_csv", path=str(path), tokenizer=kind, vocab_size=60, max_length=3)
    )
    assert data.meta.class_names == ["bad", "good"] and len(data.meta.vocab) <= 60
    assert max(len(ids) for ids in data.train.ids) <= 3  # truncated to max_length


def test_text_csv_names_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("review,stars\nfine,5\n")
    with pytest.raises(
        ConfigError, match="has no column text, label; its columns are review, stars"
    ):
        DATASETS.build("text_csv", options("text_csv", path=str(path)))


def test_sst2_and_ag_news_formats(tmp_path: Path) -> None:
    sst = tmp_path / "SST-2"
    sst.mkdir()
    rows = "".join(f"{t}\t1\n" for t in GOOD * 5) + "".join(f"{t}\t0\n" for t in BAD * 5)
    for name in ("train", "dev"):
        (sst / f"{name}.tsv").write_text("sentence\tlabel\n" + rows)
    data = DATASETS.build("sst2", options("sst2", path=str(sst), val_fraction=0.2))
    assert (len(data.train), len(data.val), len(data.test)) == (32, 8, 40)
    news = tmp_path / "ag_news_csv"
    news.mkdir()
    (news / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    with (news / "test.csv").open("w", newline="") as f:
        csv.writer(f).writerows([(str(i % 4 + 1), f"title {i}", f"body\\{i}") for i in range(40)])
    data = DATASETS.build("ag_news", options("ag_news", path=str(news), min_frequency=1))
    assert (len(data.train), len(data.val), len(data.test)) == (28, 4, 8)
    assert data.meta.class_names == ["World", "Sports", "Business", "Sci/Tech"]


def test_token_batches_bucket_by_length_and_pad_with_zero() -> None:
    ids = [torch.arange(1, n + 1) for n in [5, 1, 9, 3, 7, 2, 8, 4]]
    dataset = TokenDataset(ids, torch.arange(8))
    batches = list(TokenBatches(dataset, batch_size=2, shuffle=True, seed=0))
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(8))
    for x, y in batches:
        lengths = (x != 0).sum(1)
        assert x.shape[1] == lengths.max()  # padded to the batch's longest only
        assert lengths.tolist() == [len(ids[i]) for i in y]
    # bucketing: neighbours in length share a batch
    assert sorted(sorted(len(ids[i]) for i in y) for _, y in batches) == [
        [1, 2],
        [3, 4],
        [5, 7],
        [8, 9],
    ]


def test_text_rnn_ignores_padding() -> None:
    vocab = ["[PAD]", "[UNK]"] + [f"w{i}" for i in range(20)]
    model = MODELS.build(
        "text_rnn",
        {"embedding_dim": 8, "hidden_size": 6, "bidirectional": True, "num_layers": 2},
        vocab=vocab,
        out_features=3,
    )
    model.eval()
    short = torch.tensor([[4, 5, 6]])
    padded = torch.tensor([[4, 5, 6, 0, 0, 0]])
    assert torch.allclose(model(short), model(padded), atol=1e-6)
    assert model(torch.tensor([[4, 5, 6, 0], [7, 0, 0, 0]])).shape == (2, 3)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_var_length_rnn_equals_torch_on_packed_sequences(cell: str) -> None:
    torch.manual_seed(0)
    reference = CELLS[cell](5, 4, num_layers=2, bidirectional=True, batch_first=True)
    ours = VarLengthRNN(cell, 5, 4, num_layers=2, bidirectional=True, dropout=0.0)
    for layer, directions in enumerate(ours.layers):
        for direction, rnn in enumerate(directions):
            suffix = "_reverse" if direction else ""
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(rnn, f"{name}_l0").data = getattr(reference, f"{name}_l{layer}{suffix}")
    lengths = torch.tensor([7, 3, 5, 1])
    x = torch.randn(4, 7, 5) * (torch.arange(7) < lengths[:, None])[..., None]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    hidden = reference(packed)[1]
    hidden = hidden[0] if cell == "lstm" else hidden
    expected = torch.cat([hidden[-2], hidden[-1]], dim=-1)
    assert torch.allclose(ours(x + 9 * (x == 0), lengths), expected, atol=1e-5)  # padding unread


def test_pretrained_vectors_are_loaded_and_can_be_frozen(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.vec"
    vectors.write_text("2 3\nw1 0.5 0.5 0.5\n[UNK] 9 9 9\nunseen 1 2 3\n")
    vocab = ["[PAD]", "[UNK]", "w0", "w1"]
    model = MODELS.build(
        "text_rnn",
        {"embedding_dim": 3, "vectors": str(vectors), "freeze_vectors": True},
        vocab=vocab,
        out_features=2,
    )
    weight = model.embedding.weight
    assert torch.equal(weight[3], torch.full((3,), 0.5))
    assert torch.equal(weight[:2], torch.zeros(2, 3)) and not weight.requires_grad
    with pytest.raises(ConfigError, match="3-dimensional vectors but model.embedding_dim is 4"):
        MODELS.build(
            "text_rnn", {"embedding_dim": 4, "vectors": str(vectors)}, vocab=vocab, out_features=2
        )


@pytest.mark.slow
def test_text_run_end_to_end_saves_the_tokenizer(tmp_path: Path) -> None:
    folder = make_imdb(tmp_path / "data", per_class=20)
    cfg = compose_config(
        *FAST,
        "model=text_rnn",
        "dataset=imdb",
        f"dataset.path={folder}",
        "loss=bce_with_logits",
        "dataset.min_frequency=1",
        "trainer.epochs=5",
        "optimizer.lr=0.01",
        "trainer.batch_size=8",
    )
    summary = run(cfg, tmp_path / "run")
    assert summary["metrics"]["test/acc"] > 0.8
    saved = Tokenizer.from_file(str(tmp_path / "run" / "tokenizer.json"))
    assert saved.token_to_id("wonderful") is not None


def test_real_sst2_reads(tmp_path: Path) -> None:
    if not (SHARED / "sst2").is_dir():
        pytest.skip(f"{SHARED / 'sst2'} is absent (the real data lives outside the repo)")
    data = DATASETS.build("sst2", options("sst2", path=str(SHARED / "sst2" / "SST-2")))
    assert len(data.train) + len(data.val) == 67349 and len(data.test) == 872


def write_rows(path: Path, header: tuple[str, str], rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def text_csv_error(path: Path, **extra: object) -> str:
    """The one-line ConfigError of building text_csv on `path`."""
    with pytest.raises(ConfigError) as err:
        DATASETS.build("text_csv", options("text_csv", path=str(path), **extra))
    [line] = str(err.value).splitlines()
    return line


def test_text_csv_refuses_empty_labels_one_class_and_no_text(tmp_path: Path) -> None:
    columns = {"text_column": "review", "label_column": "stars"}
    rows = [(t, "5") for t in GOOD * 3] + [(t, "1") for t in BAD * 3]
    unlabelled = rows + [("no stars given", ""), ("blank stars", "  "), ("nothing", "")]
    path = write_rows(tmp_path / "reviews.csv", ("review", "stars"), unlabelled)
    assert text_csv_error(path, **columns) == (
        "dataset text_csv: 3 rows of reviews.csv have an empty label in column 'stars'; "
        "fill or remove them"
    )
    write_rows(path, ("review", "stars"), [(t, "5") for t in GOOD * 10])
    assert text_csv_error(path, **columns) == (
        "dataset.label_column: column 'stars' of reviews.csv holds one value ('5') in all 40 "
        "rows; a classifier needs at least two classes"
    )
    write_rows(path, ("review", "stars"), [(" ", s) for _, s in rows])
    assert "every text in the train split is empty (24 rows)" in text_csv_error(path, **columns)
    write_rows(path, ("review", "stars"), [])
    assert "has no rows under its header" in text_csv_error(path, **columns)


def test_imdb_with_one_class_and_ag_news_with_bad_rows_are_named(tmp_path: Path) -> None:
    folder = make_imdb(tmp_path)
    for review in (folder / "train" / "neg").iterdir():
        review.unlink()
    with pytest.raises(ConfigError, match="holds one label \\('pos'\\) in all 6 rows"):
        DATASETS.build("imdb", options("imdb", path=str(folder)))
    news = tmp_path / "ag_news_csv"
    news.mkdir()
    (news / "test.csv").write_text('"1","title","body"\n"7","title","body"\n')
    with pytest.raises(ConfigError, match="test.csv has class indices 7; expected 1..4 "):
        DATASETS.build("ag_news", options("ag_news", path=str(news)))
    (news / "test.csv").write_text('"1","title","body"\n"2","title"\n')
    with pytest.raises(ConfigError, match="1 rows of .*test.csv do not hold 3 fields"):
        DATASETS.build("ag_news", options("ag_news", path=str(news)))
    (news / "test.csv").write_bytes(b'"1","caf\xe9","body"\n')  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match="dataset ag_news: cannot read .*test.csv \\(.*utf-8"):
        DATASETS.build("ag_news", options("ag_news", path=str(news)))
