"""Greedy decoding of an exported Mu with ONNX Runtime: encoder once, then one decoder step per token.

The runner owns the fixed-size KV cache: it feeds the step's `present_*` outputs back as the next
step's `past_*` inputs, and passes the encoder's cross-attention K/V through unchanged.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textbook.errors import TextbookError
from textbook.export.config import THREADS
from textbook.export.deps import need
from textbook.mu.calls import CallTries, load_calls
from textbook.mu.lexicon import Lexicon
from textbook.mu.neighbours import FLOOR, load_neighbours
from textbook.mu.tokenizer import source_text

MANIFEST = "export.json"

# What the runner reads from the manifest: a damaged one is a clear error here, not a KeyError mid-run.
_NEEDED = {"shapes": ("source_len", "cache_len", "layers", "kv_heads", "head_dim"),
           "special_ids": ("bos_id", "eos_id", "pad_id")}


def _redo(directory: str | Path) -> str:
    return f"re-run `textbook export RUN --out {directory}`"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _manifest_problem(manifest: object) -> str | None:
    """What is wrong with a parsed export.json (None when the runner can use it)."""
    if not isinstance(manifest, dict):
        return "it is not a JSON object"
    missing = [k for k in ("variants", "default_variant", *_NEEDED) if k not in manifest]
    if missing:
        return f"it lacks {', '.join(missing)}"
    for key, fields in _NEEDED.items():
        section = manifest[key]
        bad = [f for f in fields if not isinstance(section, dict) or type(section.get(f)) is not int]
        if bad:
            return f"{key} lacks whole numbers for {', '.join(bad)}"
    variants = manifest["variants"]
    if not isinstance(variants, dict) or not variants:
        return "it lists no variants"
    for name, entry in variants.items():
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict) or not all(isinstance(files.get(g), str) for g in ("encoder", "decoder")):
            return f"variant {name!r} lacks its encoder and decoder files"
    return None


def read_export_manifest(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise TextbookError(f"{directory} has no {MANIFEST}: point at a directory written by `textbook export RUN --out DIR`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError: a truncated or overwritten file
        raise TextbookError(f"{path} is not valid JSON ({exc}): the export is damaged; {_redo(directory)}") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise TextbookError(f"{path} is damaged or from another version ({problem}): {_redo(directory)}")
    return manifest


def earlier_manifest(directory: str | Path) -> dict | None:
    """The manifest of an earlier export into `directory`, or None when there is none or it is damaged
    (re-exporting is how a damaged export is mended, so it must not stop the export)."""
    try:
        return read_export_manifest(directory)
    except TextbookError:
        return None


@dataclass(slots=True)
class Generation:
    tokens: list[int]  # generated ids, EOS excluded
    first_token_s: float  # encoder + first decoder step
    total_s: float  # everything after tokenization
    steps: int  # decoder steps run (EOS included when reached)
    logprob: float = 0.0  # of the emitted tokens, EOS included, over the allowed ones when constrained (Mu.generate_scored)

    @property
    def confidence(self) -> float:
        return math.exp(self.logprob)


class Runner:
    """One variant (fp32, int8, a16w8, dynamic) of an export directory, ready to decode."""

    def __init__(self, directory: str | Path, variant: str | None = None, *, threads: int = THREADS, manifest: dict | None = None,
                 constrained: bool = True, retrieval: bool = True):
        ort = need("onnxruntime")
        tokenizers = need("tokenizers")
        self.directory = Path(directory)
        self.manifest = manifest or read_export_manifest(self.directory)
        variants = self.manifest["variants"]
        self.variant = variant or self.manifest["default_variant"]
        if self.variant not in variants:
            raise TextbookError(
                f"{directory} has no {self.variant!r} variant (it has {', '.join(variants)}): "
                f"re-export with --quantize {self.variant}"
            )
        shapes = self.manifest["shapes"]
        self.source_len, self.cache_len = shapes["source_len"], shapes["cache_len"]
        self.layers, self.kv_heads, self.head_dim = shapes["layers"], shapes["kv_heads"], shapes["head_dim"]
        special = self.manifest["special_ids"]
        self.bos, self.eos, self.pad_id = special["bos_id"], special["eos_id"], special["pad_id"]
        self.lowercase = bool(self.manifest.get("lowercase_source", False))
        self.lexicon = Lexicon.load(self.directory / "lexicon.json") if self.manifest.get("spell_correct") else None
        try:
            self.tokenizer = tokenizers.Tokenizer.from_file(str(self.directory / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception for a missing or unreadable file
            raise TextbookError(
                f"{self.directory / 'tokenizer.json'} cannot be read ({_first_line(exc)}): {_redo(directory)}"
            ) from None
        # Only the catalogue's valid calls (textbook/mu/calls.py), when the export carries them.
        calls = load_calls(self.directory) if constrained else None
        self.tries = CallTries(calls, self.tokenizer, self.eos) if calls else None
        self.allowed = self.tries.full.allowed if self.tries is not None else None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:  # THREADS says why one is the default
            options.intra_op_num_threads = threads
        files = variants[self.variant]["files"]
        try:
            self.encoder = ort.InferenceSession(str(self.directory / files["encoder"]), options, providers=["CPUExecutionProvider"])
            self.decoder = ort.InferenceSession(str(self.directory / files["decoder"]), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise TextbookError(
                f"ONNX Runtime cannot load {self.variant} from {directory} ({_first_line(exc)}): {_redo(directory)}"
            ) from None
        self.bytes = sum((self.directory / f).stat().st_size for f in files.values())
        self._past_names = [f"past_{kv}_{i}" for i in range(self.layers) for kv in ("key", "value")]
        self._cross_names = [f"cross_{kv}_{i}" for i in range(self.layers) for kv in ("key", "value")]
        # Retrieval (textbook/mu/neighbours.py) needs the valid calls, the index and an encoder with a sentence output
        # (exports from before it have none: they decode as they always did).
        self.has_sentence = "sentence" in {o.name for o in self.encoder.get_outputs()}
        self.index = None
        if retrieval and self.tries is not None and self.has_sentence:
            self.index = load_neighbours(self.directory, self.manifest.get("weights_sha256"), _redo(directory))

    # -- text <-> ids -------------------------------------------------------------------------------
    def source_tokens(self, text: str) -> list[int]:
        """Tokens of a query as the trainer feeds them: the text normalised as in training (lowercased,
        spell-corrected, if it was trained so), its ids, then EOS."""
        return self.tokenizer.encode(source_text(text, self.lowercase, self.lexicon), add_special_tokens=False).ids + [self.eos]

    def source_ids(self, text: str) -> list[int]:
        """source_tokens, or a clear error when the query does not fit the export's static source length."""
        ids = self.source_tokens(text)
        if len(ids) > self.source_len:
            raise TextbookError(
                f"the query is {len(ids)} tokens; this export takes at most {self.source_len}: "
                "shorten it or re-export with a larger --max-source-len"
            )
        return ids

    def decode_text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def pad(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """ids -> input_ids int32 (1, S) right-padded, source_mask float32 (1, S) 1 = real token."""
        input_ids = np.full((1, self.source_len), self.pad_id, dtype=np.int32)
        mask = np.zeros((1, self.source_len), dtype=np.float32)
        input_ids[0, : len(ids)] = ids
        mask[0, : len(ids)] = 1.0
        return input_ids, mask

    # -- graphs -------------------------------------------------------------------------------------
    def encode(self, input_ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        return self.encoder.run(self._cross_names, {"input_ids": input_ids, "source_mask": mask})

    def sentence(self, ids: list[int]) -> np.ndarray:
        """The encoder's pooled state of one source (1, D), what retrieval compares."""
        input_ids, mask = self.pad(ids)
        return self.encoder.run(["sentence"], {"input_ids": input_ids, "source_mask": mask})[0]

    def empty_cache(self) -> list[np.ndarray]:
        shape = (1, self.kv_heads, self.cache_len, self.head_dim)
        return [np.zeros(shape, dtype=np.float32) for _ in self._past_names]

    def step_feed(self, token: int, position: int, mask: np.ndarray, past: list[np.ndarray], cross: list[np.ndarray]) -> dict:
        feed = {"input_ids": np.array([[token]], dtype=np.int32), "position": np.array([position], dtype=np.int32), "source_mask": mask}
        feed.update(zip(self._past_names, past))
        feed.update(zip(self._cross_names, cross))
        return feed

    def run(self, ids: list[int], *, text: str | None = None, forced: list[int] | None = None, max_new_tokens: int | None = None,
            trace=None) -> tuple[Generation, list[np.ndarray]]:
        """Greedy decoding of one source; with `forced`, feed those tokens instead (teacher forcing). With an index,
        retrieval also reads the query's words: `text` is the query (required then).

        Returns the generation and each step's logits (1, V). `trace(name, feed)` sees every graph
        input (calibration).
        """
        start = time.perf_counter()
        input_ids, mask = self.pad(ids)
        if trace:
            trace("encoder", {"input_ids": input_ids, "source_mask": mask})
        choose = self.allowed  # the tokens the answer is chosen from; self.allowed: those its probability is taken over
        if self.index is not None and forced is None:
            if text is None:
                raise ValueError("retrieval reads the query's words: pass text=")
            *cross, sentence = self.encoder.run([*self._cross_names, "sentence"], {"input_ids": input_ids, "source_mask": mask})
            choice = self.index.vote(sentence, [source_text(text, self.lowercase, self.lexicon)])[0]
            choose = self.tries.steer(choice.head, choice.shares, FLOOR, choice.numbers)
        else:
            cross = self.encode(input_ids, mask)
        past = self.empty_cache()
        limit = min(max_new_tokens or self.cache_len, self.cache_len)
        if forced is not None:
            limit = min(limit, len(forced))
        token, tokens, logits_seen, first, logprob = self.bos, [], [], 0.0, 0.0
        for position in range(limit):
            feed = self.step_feed(token, position, mask, past, cross)
            if trace:
                trace("decoder", feed)
            logits, *past = self.decoder.run(None, feed)
            logits_seen.append(logits)
            if position == 0:
                first = time.perf_counter() - start
            if forced is not None:
                token = forced[position]
            else:
                row = logits[0].astype(np.float64)
                if choose is None:
                    token = int(row.argmax())
                    scored = row
                else:
                    candidates = choose(tokens)
                    bias = choose.bias(tokens, candidates) if hasattr(choose, "bias") else None  # calls.py Steer
                    values = row[candidates] if bias is None else row[candidates] + np.array(bias)
                    token = candidates[int(values.argmax())]
                    scored = row[self.allowed(tokens)]
                top = scored.max()
                logprob += float(row[token] - top - np.log(np.exp(scored - top).sum()))  # log-softmax of the chosen token
            tokens.append(token)
            if forced is None and token == self.eos:
                break
        total = time.perf_counter() - start
        steps = len(tokens)
        if tokens and tokens[-1] == self.eos:
            tokens = tokens[:-1]
        return Generation(tokens, first, total, steps, logprob), logits_seen

    def __call__(self, text: str) -> tuple[str, Generation]:
        generation, _ = self.run(self.source_ids(text), text=text)
        return self.decode_text(generation.tokens), generation
