"""Candidate samples: seed -> (noise) -> label, split and group key, in deterministic chunks.

`candidate_chunk(ctx, k)` is a pure function of the config and k: chunk k always holds the same candidates,
which is what makes a killed run resume exactly (run.py replays from the last checkpoint) and lets worker
processes render chunks in parallel. The near-duplicate cap is applied afterwards, in order, by run.py.
"""

from __future__ import annotations

from collections import Counter

import random
from dataclasses import dataclass, field

import xxhash

from textbook.contract import format_target, value_text
from textbook.settings.catalogue import Catalogue, load_catalogue
from textbook.settings.config import SettingsConfig
from textbook.settings.language import NOT_ALNUM, NoiseLexicon, load_noise_lexicon, load_templates
from textbook.settings.noise import Noiser
from textbook.settings.sampling import confusable_groups, setting_weights, split_of
from textbook.settings.seeds import SeedBank, _Choice

CHUNK = 4096
COLUMNS = ("query", "target", "id", "uri", "action", "value", "style", "noise_ops", "source", "split", "seed_id",
           "clean_query")
NATURAL_CAPS = 0.1  # people sometimes start with a capital letter; not noise


@dataclass
class Context:
    cfg: SettingsConfig
    catalogue: Catalogue
    lexicon: NoiseLexicon
    bank: SeedBank
    noiser: Noiser
    weights: list[float]
    groups: list[set[int]]
    chooser: _Choice = field(repr=False)


def build_context(cfg: SettingsConfig) -> Context:
    catalogue = load_catalogue(cfg.catalogue)
    lexicon = load_noise_lexicon()
    bank = SeedBank(catalogue, load_templates(), lexicon)
    groups = confusable_groups(catalogue)
    weights = setting_weights(catalogue, floor=cfg.popularity_floor, boost=cfg.confusable_boost,
                              reachable=bank.reachable(), groups=groups)
    return Context(cfg, catalogue, lexicon, bank, Noiser(lexicon), weights, groups,
                   _Choice(list(enumerate(weights))))


@dataclass
class Chunk:
    """Candidates in order: kept rows as columns (+ duplicate key, position, relabel flag) and removed rows."""

    cols: dict[str, list] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    keys: list[int] = field(default_factory=list)
    pos: list[int] = field(default_factory=list)  # candidate position of each kept row
    relabelled: list[bool] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)  # each with "pos"
    n: int = 0  # candidates so far
    judge_picks: Counter = field(default_factory=Counter)  # position of the judge's answer: "first" / "other"

    def __len__(self) -> int:
        return len(self.keys)

    def drop(self, reason: str, *, query: str, clean: str, target: str, source: str, style: str,
             ops: list[str] | None = None, detail: str = "") -> None:
        self.removed.append({"query": query, "clean_query": clean, "target": target, "source": source, "style": style,
                             "noise_ops": ops or [], "reason": reason, "detail": detail, "pos": self.n})
        self.n += 1


def group_text(text: str, lexicon: NoiseLexicon, words: list[str] | None = None) -> str:
    """A seed's group key text: normalised, without filler words, so near-identical seeds share a split."""
    drop = lexicon.droppable
    return " ".join([w for w in (words or text.lower().translate(NOT_ALNUM).split()) if w not in drop])


def emit(ctx: Context, rng: random.Random, out: Chunk, *, tokens: list[str], kinds: list[int], action: str,
         index: int, value, style: str, source: str, group: str | None = None, noise: bool | None = None,
         words: list[str] | None = None) -> None:
    """Label one clean request, maybe noise it, and append it to `out` (kept or removed).

    `group` is the seed's text when `tokens` is a paraphrase of it: the sample then shares the seed's
    seed_id and split."""
    clean = " ".join(tokens)
    setting = ctx.catalogue.settings[index] if index >= 0 else None
    sid = setting.id if setting else None
    target = format_target(action, sid, value)
    grouped = group_text(clean, ctx.lexicon, words)
    h = xxhash.xxh64_intdigest((target + "\x1f" + (group_text(group, ctx.lexicon) if group else grouped)).encode())
    ops: list[str] = []
    query = clean
    relabelled = False
    if noise if noise is not None else rng.random() < ctx.cfg.noise_rate:
        res = ctx.noiser.apply(rng, tokens, kinds)
        ops, query = res.ops, res.text
        if res.status == "value_lost" and value is not None and action in ("set", "increase", "decrease"):
            # The value was cut off ("set volume to"): what is left still names the setting.
            action, value = ("open" if action == "set" else action), None
            relabelled = True
        elif res.status != "ok":
            out.drop("noise_unrecognisable", query=query, clean=clean, target=target, source=source, style=style, ops=ops)
            return
    final = format_target(action, sid, value) if relabelled else target
    c = out.cols
    c["query"].append(query)
    c["target"].append(final)
    c["id"].append(sid)
    c["uri"].append(setting.uri if setting else None)
    c["action"].append(action)
    c["value"].append(None if value is None else value_text(value))
    c["style"].append(style)
    c["noise_ops"].append(ops)
    c["source"].append(source)
    c["split"].append(split_of(h, ctx.cfg.validation_share, ctx.cfg.test_share))
    c["seed_id"].append(f"{h:016x}")
    c["clean_query"].append(clean)
    # Near-duplicates: the same words once case, punctuation and filler words are gone.
    out.keys.append(xxhash.xxh64_intdigest((group_text(query, ctx.lexicon) if ops else grouped).encode()))
    out.pos.append(out.n)
    out.relabelled.append(relabelled)
    out.n += 1


def candidate_chunk(ctx: Context, k: int) -> Chunk:
    """Chunk k of template candidates (deterministic in the config's seed and k)."""
    rng = random.Random(f"{ctx.cfg.seed}:template:{ctx.cfg.chunk(k)}")
    out = Chunk()
    bank, pick, none_rate = ctx.bank, ctx.chooser.pick, ctx.cfg.none_rate
    for _ in range(CHUNK):
        if rng.random() < none_rate:
            seed = bank.none(rng)
        else:
            seed = bank.draw(rng, pick(rng))
        tokens = seed.tokens
        if rng.random() < NATURAL_CAPS:
            tokens = [tokens[0][:1].upper() + tokens[0][1:], *tokens[1:]]
        emit(ctx, rng, out, tokens=tokens, kinds=seed.kinds, action=seed.action, index=seed.setting,
             value=seed.value, style=seed.style, source="template", words=seed.words)
    return out


_WORKER_CTX: Context | None = None


def worker_init(cfg: SettingsConfig) -> None:
    global _WORKER_CTX
    _WORKER_CTX = build_context(cfg)


def worker_chunk(k: int) -> Chunk:
    return candidate_chunk(_WORKER_CTX, k)
