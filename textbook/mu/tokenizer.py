"""Byte-level BPE tokenizers (Hugging Face `tokenizers`): train one from shards, or bring any tokenizer.json.

Byte-level (GPT-2's scheme) so every string has an encoding: typos and noise in settings queries
never map to an unknown token. Special tokens: <pad> 0, <s> 1, </s> 2 in tokenizers trained here; for
a tokenizer.json from elsewhere, `special_ids` finds the usual names for them.

Pre-tokenization decides where merges may not cross:
- `words` (prose, code; GPT-2's regex): letters, digits and punctuation runs are split apart.
- `whitespace` (settings): only spaces split, and tokens are at most 16 characters. A compact JSON
  call has no spaces, so BPE learns its frequent pieces (`{"action":"set`, `","id":"sound.`,
  `","value":6`): about 4 target tokens instead of 13 with `words`. Every decode step saved is
  latency saved on the device, and values still compose from short pieces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from textbook.contract import QUERY, SPLIT, TARGET, TEXT
from textbook.errors import TextbookError
from textbook.mu.config import PRETOKENIZE, SPECIAL_TOKENS, TokenizerConfig  # noqa: F401 (TokenizerConfig: this module's options)
from textbook.report import Report
from textbook.shards import iter_batches, read_manifest

# Names other tokenizers use, in order of preference.
_PAD = ("<pad>", "[PAD]", "<|pad|>", "<|padding|>")
_BOS = ("<s>", "<bos>", "<|startoftext|>", "[CLS]", "<|endoftext|>")
_EOS = ("</s>", "<eos>", "<|endoftext|>", "[SEP]", "<|end|>")




def train_tokenizer(texts: Iterable[str], vocab_size: int, out: str | Path, *, pretokenize: str = "words"):
    """Train a byte-level BPE on `texts` and save it as tokenizer.json at `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise TextbookError(f"--vocab-size {vocab_size} is too small: a byte-level BPE needs at least 259 (256 bytes + 3 specials)")
    if pretokenize not in PRETOKENIZE:
        raise TextbookError(f"unknown pre-tokenization {pretokenize!r}: use one of {', '.join(PRETOKENIZE)}")
    tokenizer = Tokenizer(models.BPE())
    if pretokenize == "words":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(" ", "merged_with_next"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        max_token_length=16 if pretokenize == "whitespace" else None,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out))
    return tokenizer


def load_tokenizer(path: str | Path):
    from tokenizers import Tokenizer

    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise TextbookError(f"no tokenizer at {path}: train one with `textbook tokenizer train SHARDS` or pass a tokenizer.json")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses for bad JSON
        raise TextbookError(f"{path} is not a valid tokenizer.json ({exc})") from None


def special_ids(tokenizer) -> dict[str, int]:
    """pad/bos/eos ids of a tokenizer; pad falls back to eos (padding is masked by length, never by id)."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)

    def find(names: tuple[str, ...]) -> int | None:
        return next((vocab[n] for n in names if n in vocab), None)

    bos, eos = find(_BOS), find(_EOS)
    if bos is None or eos is None:
        raise TextbookError(
            "the tokenizer has no begin/end-of-sequence tokens (looked for <s>/</s>, <|endoftext|>, [CLS]/[SEP]): "
            "train one with `textbook tokenizer train` or add them"
        )
    pad = find(_PAD)
    return {"pad_id": eos if pad is None else pad, "bos_id": bos, "eos_id": eos}


def with_bpe_dropout(tokenizer, p: float):
    """A copy of a BPE tokenizer that skips each merge with probability p (training-time segmentation noise)."""
    import json

    from tokenizers import Tokenizer

    if not 0.0 <= p < 1.0:
        raise TextbookError(f"--bpe-dropout must be in [0, 1), got {p}")
    spec = json.loads(tokenizer.to_str())
    if (spec.get("model") or {}).get("type") != "BPE":
        raise TextbookError("--bpe-dropout needs a BPE tokenizer; this tokenizer.json holds another model")
    spec["model"]["dropout"] = p
    return Tokenizer.from_str(json.dumps(spec))


def source_text(text: str, lowercase: bool, lexicon=None) -> str:
    """A query as the encoder reads it (MuConfig.lowercase_source, then .spell_correct with its lexicon)."""
    text = text.lower() if lowercase else text
    return lexicon.correct(text) if lexicon is not None else text


def texts_from_shards(
    directories: Iterable[str | Path], columns: list[str] | None = None, *, split: str | None = None, limit: int | None = None,
    lowercase: Iterable[str] = (), lexicon=None,
) -> Iterator[str]:
    """Strings for tokenizer training: the `text` column, or query + target for settings shards.

    With `split`, rows of other splits (when there is a split column) are left out, so held-out
    queries never shape the vocabulary. Columns named in `lowercase` are lowercased, as the model
    will read them (and spell-corrected with `lexicon`, when given).
    """
    import pyarrow.compute as pc  # loaded by the one function that needs it

    lowercase = set(lowercase)
    seen = 0
    for directory in directories:
        manifest = read_manifest(directory)
        if manifest is None:
            raise TextbookError(f"{directory} has no manifest.json: point at a shard directory written by textbook")
        names = [f["name"] for f in manifest["schema"]]
        use = columns or ([TEXT] if TEXT in names else [c for c in (QUERY, TARGET) if c in names])
        missing = [c for c in use if c not in names]
        if not use or missing:
            raise TextbookError(
                f"{directory} has no column {', '.join(missing or [TEXT])} (it has {', '.join(names)}): pass --column"
            )
        for batch in iter_batches(directory, use + ([SPLIT] if split and SPLIT in names else [])):
            if split and SPLIT in names:
                batch = batch.filter(pc.equal(batch.column(SPLIT), split)).drop_columns([SPLIT])
            for name, column in zip(batch.column_names, batch.columns):
                for value in column.to_pylist():
                    if value:
                        yield source_text(value, True, lexicon) if name in lowercase else value
                        seen += 1
                        if limit is not None and seen >= limit:
                            return


def default_pretokenize(directories: Iterable[str | Path], columns: list[str] | None = None) -> str:
    """`whitespace` for settings shards (query/target), `words` for text."""
    if columns:
        return "whitespace" if set(columns) <= {QUERY, TARGET} else "words"
    for directory in directories:
        manifest = read_manifest(directory) or {"schema": []}
        if TEXT in {f["name"] for f in manifest["schema"]}:
            return "words"
    return "whitespace"


def build(shards: Iterable[str | Path], cfg: TokenizerConfig) -> Report:
    """`textbook tokenizer train`: a BPE learnt from the shards' strings, saved at cfg.out."""
    tok = tokenizer_from_shards(shards, cfg)
    return Report({"path": str(cfg.out), "vocab_size": tok.get_vocab_size()},
                  ["tokenizer", f"  path: {cfg.out}", f"  vocab_size: {tok.get_vocab_size()}"])


def tokenizer_from_shards(shards: Iterable[str | Path], cfg: TokenizerConfig):
    """A BPE learnt from the shards' strings, saved at cfg.out (the tokenizer itself, for the trainer)."""
    shards = list(shards)
    columns = list(cfg.column) or None
    texts = texts_from_shards(shards, columns, split=cfg.split or None, limit=cfg.limit)
    return train_tokenizer(texts, cfg.vocab_size, cfg.out, pretokenize=cfg.pretokenize or default_pretokenize(shards, columns))
