"""Tokenisation throughput on the full IMDB train split (25,000 reviews).

Times reading the reviews, training dltrain's default word-level tokenizer on them, and encoding
them all, then prints reviews/second for each step.

    .venv/bin/python benchmarks/tokenize_imdb.py --path ../shared/data/imdb/aclImdb_labeled.tar.gz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dltrain.data.text_files import read_imdb
from dltrain.data.tokenizer import encode, train_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="../shared/data/imdb/aclImdb_labeled.tar.gz")
    parser.add_argument("--kind", default="word", choices=["word", "wordpiece", "bpe"])
    args = parser.parse_args()

    start = time.perf_counter()
    texts = read_imdb(Path(args.path))["train"][0]
    read = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = train_tokenizer(texts, args.kind, vocab_size=25000, min_frequency=2, lowercase=True)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    ids = encode(tokenizer, texts, max_length=256)
    encoded = time.perf_counter() - start

    n = len(texts)
    print(
        f"{n} reviews, {sum(len(i) for i in ids):,} tokens kept (max_length 256), "
        f"tokenizer '{args.kind}', vocabulary {tokenizer.get_vocab_size():,}"
    )
    print("| step | seconds | reviews/s |")
    print("|---|---|---|")
    for step, seconds in (
        ("read (tar.gz)", read),
        ("train tokenizer", trained),
        ("encode", encoded),
    ):
        print(f"| {step} | {seconds:.2f} | {n / seconds:,.0f} |")


if __name__ == "__main__":
    main()
