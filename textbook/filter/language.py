"""Language identification by function words: keep documents written in the languages a run wants.

FineWeb keeps English pages by fastText's language-id model (score >= 0.65). This toolkit ships no such
model, so this step uses the short-word method (Grefenstette 1995, "Comparing two language identification
schemes"; Ingle 1976): in running text, a language's few dozen most frequent function words make up a
large, stable share of its words (English "the, of, and, to": ~35-45%), and another language's make up
little. A document's language is the one whose function words are the largest share of its words; it is
kept when that language is in `keep` and the share reaches `min_share` (below it: too little running
text to tell, e.g. lists, code, tables). Reasons: `language_<code>` or `language_unknown`.

One file, named in a preset (`language: {keep: [en]}`): the proof that a stage is added this way
(filter/steps.py). The word lists are the most frequent function words of each language, from general
knowledge of the languages; words two languages share (e.g. "in", "de") are left out of both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textbook.minhash import WordTable

FUNCTION_WORDS = {
    "en": "the of and to is that for it with as was on are be this by from at or have an they which not but you were "
          "his her their been has had would there what when",
    "de": "der die und den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus er hat "
          "dass sie nach wird bei einer um",
    "fr": "le la les et des du est un une que dans qui pour pas sur au avec il elle ce sont par plus ne se mais ou "
          "nous vous leur été",
    "es": "el los las del y que en un una es por con para se su al lo como más pero sus le ya o fue este ha sí "
          "porque esta entre",
    "it": "il di che della dei delle un una per non sono gli nel alla anche come più ma ha questo si sua suo del "
          "al da lo ci essere",
    "nl": "het een van en dat op te zijn met voor niet aan er ook als bij door maar om dan heeft wordt werd nog "
          "worden ze hij deze naar",
    "pt": "o os as do da dos das e que em um uma para com não por se na no mais como mas foi ao ele ela seu sua "
          "pelo pela são",
}


@dataclass(frozen=True)
class Config:
    enabled: bool = True
    keep: tuple[str, ...] = ("en",)  # language codes of FUNCTION_WORDS
    min_share: float = 0.06  # of a document's words that are its language's function words


class Step:
    name = "language"

    def __init__(self, config: Config):
        from textbook.errors import ConfigError

        unknown = sorted(set(config.keep) - set(FUNCTION_WORDS))
        if unknown:
            raise ConfigError(f"language.keep: no function words for {', '.join(unknown)}; known: {', '.join(FUNCTION_WORDS)}")
        self.config = config
        self.codes = list(FUNCTION_WORDS)
        shared = _shared_words()
        self.hashes = [np.unique(WordTable([" ".join(w for w in FUNCTION_WORDS[c].split() if w not in shared)]).hashes)
                       for c in self.codes]

    def __call__(self, docs, rows: list[int]) -> list[str | None]:
        words = docs.words
        doc = words.doc_of_word()
        n = len(words.counts)
        total = np.maximum(words.counts, 1)
        share = np.stack([np.bincount(doc, weights=np.isin(words.hashes, h), minlength=n) / total for h in self.hashes])
        out = []
        for i in rows:
            best = int(np.argmax(share[:, i]))
            if share[best, i] < self.config.min_share:
                out.append("language_unknown")
            elif self.codes[best] not in self.config.keep:
                out.append(f"language_{self.codes[best]}")
            else:
                out.append(None)
        return out


def _shared_words() -> set[str]:
    seen: dict[str, int] = {}
    for words in FUNCTION_WORDS.values():
        for w in set(words.split()):
            seen[w] = seen.get(w, 0) + 1
    return {w for w, c in seen.items() if c > 1}
