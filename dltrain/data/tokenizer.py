"""Texts to token ids: HF `tokenizers` trained on a train split (or loaded from a run's file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dltrain.data.files import reason, regular_file
from dltrain.errors import ConfigError

SPECIALS = ["[PAD]", "[UNK]"]  # ids 0 and 1: the models treat id 0 as padding


def train_tokenizer(
    texts: list[str], kind: str, vocab_size: int, min_frequency: int, lowercase: bool
):
    """A word-level (default), WordPiece or BPE tokenizer trained on `texts`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    model, trainer = {
        "word": (models.WordLevel(unk_token="[UNK]"), trainers.WordLevelTrainer),
        "wordpiece": (models.WordPiece(unk_token="[UNK]"), trainers.WordPieceTrainer),
        "bpe": (models.BPE(unk_token="[UNK]"), trainers.BpeTrainer),
    }[kind]
    tokenizer = Tokenizer(model)
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # words and punctuation
    tokenizer.train_from_iterator(
        texts, trainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS)
    )
    return tokenizer


def load_tokenizer(path: str):
    """A trained tokenizer from its JSON file (a run's tokenizer.json)."""
    from tokenizers import Tokenizer

    file = regular_file(Path(path).expanduser(), "dataset.tokenizer_file")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises its own exception type for bad files
        raise ConfigError(f"dataset.tokenizer_file: cannot load {path} ({reason(e)})") from None


def encode(tokenizer, texts: list[str], max_length: int) -> list[torch.Tensor]:
    """Token ids per text, truncated to max_length; an empty text becomes one [UNK]."""
    encodings = tokenizer.encode_batch(texts)
    return [torch.tensor(e.ids[:max_length] or [1], dtype=torch.int64) for e in encodings]


@dataclass(frozen=True)
class TokenizerOptions:
    """How texts become token ids: a tokenizer trained on the train split (or a saved one)."""

    tokenizer: Literal["word", "wordpiece", "bpe"] = "word"
    vocab_size: int = 20000
    min_frequency: int = 1
    lowercase: bool = True
    max_length: int = 256  # tokens kept per text
    tokenizer_file: str | None = None  # a trained tokenizer.json: used instead of training one

    def check(self) -> None:
        """ConfigError unless the sizes are positive (the vocabulary holds more than specials)."""
        if self.max_length < 1 or self.vocab_size < len(SPECIALS) + 1 or self.min_frequency < 1:
            raise ConfigError(
                "dataset.max_length, dataset.vocab_size and dataset.min_frequency must be "
                f"positive, got {self.max_length}, {self.vocab_size}, {self.min_frequency}"
            )
