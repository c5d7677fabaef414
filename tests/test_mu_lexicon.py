"""Spelling correction against the train split's words (textbook/mu/lexicon.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from textbook.errors import TextbookError
from textbook.mu.lexicon import Lexicon, distance
from textbook.shards import ShardWriter

QUERIES = [
    "turn on bluetooth", "show the taskbar on all displays", "make the mouse cursor bigger",
    "decrease the screen brightness", "switch the time zone", "show document names on the taskbar",
    "turn off the touchpad", "open display settings", "set volume to 70",
]


@pytest.fixture(scope="module")
def lexicon():
    return Lexicon.from_texts(QUERIES * 3)


def test_distance_counts_a_swap_of_neighbours_as_one_edit():
    assert distance("taskbar", "tsakbar") == 1 and distance("abc", "abc") == 0
    assert distance("", "abc") == 3 and distance("ca", "abc") == 3


def test_distance_charges_a_far_key_as_two_edits():
    assert distance("volume", "volime") == 1 and distance("test", "text") == 1  # u|i and s|x are neighbours
    assert distance("miles", "files") == 2 and distance("convert", "connect") == 4
    assert distance("kitten", "sitting") == 5  # k->s, e->i: far keys; and an insertion


def test_real_words_far_from_known_ones_are_left_alone():
    lex = Lexicon({"files": 50, "connect": 20, "to": 9})
    assert lex.correct("convert 10 miles to km") == "convert 10 miles to km"
    assert lex.correct("conect 10 fiels") == "connect 10 files"


@pytest.mark.parametrize("typo, fixed", [
    ("turn on bluetoth", "turn on bluetooth"),  # deletion
    ("show the tsakbar on all displays", "show the taskbar on all displays"),  # transposition
    ("make the mouse cursour biger", "make the mouse cursor bigger"),  # insertion, deletion
    ("decrease the scrren brightnes", "decrease the screen brightness"),  # substitution, deletion
    ("switchzone", "switch zone"),  # missing space
    ("show docume nt names", "show document names"),  # stray space
    ("decraese the sreen brihgtness", "decrease the screen brightness"),  # two edits in long words
])
def test_typos_are_corrected_to_the_nearest_known_word(lexicon, typo, fixed):
    assert lexicon.correct(typo) == fixed


def test_a_missing_space_beats_a_correction_that_drops_letters():
    lex = Lexicon({"wifi": 40, "on": 90, "no": 30, "more": 20, "sound": 25, "is": 60, "where": 15})
    # Each glued pair is also two deletions from one known word: dropping them would lose the action.
    assert lex.correct("wifion") == "wifi on" and lex.correct("nomore sound") == "no more sound"
    assert lex.correct("whereis sound") == "where is sound"
    assert lex.correct("soud") == "sound"  # one edit from a word and no split: the correction


def test_a_stray_space_joins_halves_when_one_is_unknown_or_both_are():
    lex = Lexicon({"device": 30, "dev": 4, "dice": 2, "notifications": 40, "not": 50, "turn": 9, "on": 9})
    assert lex.correct("turn on dev ice") == "turn on device"  # "ice" unknown, "device" known
    assert lex.correct("notifi catons on") == "notifications on"  # "notificatons": one edit from a word
    assert lex.correct("turn on") == "turn on"  # two known words stay two


def test_known_short_numeric_and_far_words_are_left_alone(lexicon):
    for text in ("set volume to 70", "turn on wifi", "ok", "set volume to 70%!", "amsterdam time zone", "",
                 "résolution de l'écran", "bluetooth的设置"):
        assert lexicon.correct(text) == text


def test_ties_go_to_the_more_frequent_word():
    lex = Lexicon({"cat": 1, "car": 9, "cap": 3})
    assert lex.correct("caf") == "car"  # f is a neighbour of both t and r
    assert Lexicon({"cat": 5, "car": 5}).correct("caf") == "car"  # equal counts: alphabetical, so deterministic


TYPED = (["turn on night light"] * 3 + ["show the log"] * 3 + ["set the time zone"] * 2 + ["zoom in"] * 5
         + ["keyboard layout"] * 2 + ["play music"] * 4)


def test_the_last_word_is_completed_as_it_is_being_typed():
    lex = Lexicon.from_texts(TYPED)
    assert lex.word("lig") == "log"  # what spelling correction alone made of it
    assert lex.correct("night lig") == "night light" and lex.correct("keyboard lay") == "keyboard layout"
    assert lex.correct("time zo") == "time zone"  # the word that follows "time", though "zoom" is more frequent
    assert lex.correct("zo") == "zoom" and lex.correct("turn on ni") == "turn on night"  # nothing before: the most frequent
    assert lex.correct("night lig ") == "night log "  # a space after it: the word is finished, and corrected
    assert lex.correct("lig on") == "log on"  # only the last word is unfinished
    for text in ("play", "time zone", "show the log", "zoom in 2", "night l", "turn on wifi"):
        assert lex.correct(text) == text  # known, one letter, a number last, or no known word starts with it


def test_save_load_round_trip_and_clear_errors(lexicon, tmp_path):
    lexicon.save(tmp_path / "lexicon.json")
    again = Lexicon.load(tmp_path / "lexicon.json")
    assert again.counts == lexicon.counts and again.correct("turn on bluetoth") == "turn on bluetooth"
    typed = Lexicon.from_texts(TYPED)
    typed.save(tmp_path / "typed.json")
    assert Lexicon.load(tmp_path / "typed.json").pairs == typed.pairs and typed.pairs[("time", "zone")] == 2
    # A lexicon saved before completion (format 1, no word pairs) still loads, and completes by frequency alone.
    (tmp_path / "v1.json").write_text(json.dumps({"format": 1, "words": typed.counts}))
    assert Lexicon.load(tmp_path / "v1.json").correct("time zo") == "time zoom"
    with pytest.raises(TextbookError, match="is missing"):
        Lexicon.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text(json.dumps({"format": 99, "words": {}}))
    with pytest.raises(TextbookError, match="not a lexicon.json"):
        Lexicon.load(tmp_path / "bad.json")
    (tmp_path / "pairs.json").write_text(json.dumps({"format": 2, "words": {"time": 2}, "pairs": {"time": 2}}))
    with pytest.raises(TextbookError, match="not a lexicon.json"):
        Lexicon.load(tmp_path / "pairs.json")  # a damaged pair: one word
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(TextbookError, match="not a lexicon.json"):
        Lexicon.load(tmp_path / "garbage.json")


def _shards(directory, rows, columns):
    schema = pa.schema([(c, pa.string()) for c in columns])
    with ShardWriter(directory, schema) as writer:
        for row in rows:
            writer.write(dict(zip(columns, row)))
    return directory


def test_from_shards_reads_clean_queries_of_the_train_split(tmp_path):
    rows = [("turn on blutooth", "turn on bluetooth", "train")] * 5 + [("held out words", "held out words", "test")]
    lex = Lexicon.from_shards([_shards(tmp_path / "a", rows, ["query", "clean_query", "split"])])
    assert set(lex.counts) == {"turn", "on", "bluetooth"}  # the typo, repeated, is not a word; the test split is unseen


def test_from_shards_without_clean_queries_keeps_words_seen_three_times(tmp_path):
    rows = [("turn on bluetooth", "train")] * 3 + [("turn on blutooth", "train")] * 2
    lex = Lexicon.from_shards([_shards(tmp_path / "a", rows, ["query", "split"])])
    assert set(lex.counts) == {"turn", "on", "bluetooth"}
    with pytest.raises(TextbookError, match="no-spell-correct"):
        Lexicon.from_shards([_shards(tmp_path / "b", [("1 2 3", "train")], ["query", "split"])])
