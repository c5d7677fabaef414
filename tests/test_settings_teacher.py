"""The teacher path of `textbook gen settings` against the fake OpenAI-compatible server:
paraphrases prompted with the setting's metadata, and a judge whose disagreements drop samples."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from tests.settings_fixtures import ScriptedTeacher
from textbook.errors import TextbookError
from textbook.settings.config import SettingsConfig
from textbook.settings.run import generate_settings
from textbook.shards import read_table


def test_paraphrase_and_judge_through_the_fake_server(fake_teacher, tmp_path):
    fake_teacher.replies = ScriptedTeacher()
    cfg = SettingsConfig(n=400, out=str(tmp_path / "run"), teacher_share=0.5, paraphrases=3, teacher_batch=16)
    summary = generate_settings(cfg, fake_teacher.config(concurrency=8), progress=False)
    rows = read_table(tmp_path / "run/settings").to_pylist()
    teacher_rows = [r for r in rows if r["source"] == "teacher"]
    assert len(rows) == 400 and len(teacher_rows) == 200
    assert all(r["clean_query"].startswith("please ") or r["clean_query"].endswith(" right now") for r in teacher_rows)

    # The judge's disagreements are dropped with their reason, never kept.
    removed = read_table(tmp_path / "run/settings-removed").to_pylist()
    judged_out = [r for r in removed if r["reason"] == "judge_none"]
    assert judged_out and all(r["query"].startswith("mislabel") for r in judged_out)
    assert not any("mislabel" in r["clean_query"] for r in rows)
    assert 0.25 < summary.totals["judge_drop_rate"] < 0.4
    assert summary.totals["teacher_rows"] == 200

    # Every paraphrase of a seed shares the seed's group and split.
    by_seed = defaultdict(set)
    for r in teacher_rows:
        base = r["clean_query"].removeprefix("please ").removesuffix(" right now")
        by_seed[(base, r["target"])].add((r["seed_id"], r["split"]))
    assert all(len(v) == 1 for v in by_seed.values())
    assert any(len([r for r in teacher_rows if (r["seed_id"], r["split"]) in v]) >= 2 for v in by_seed.values())

    # Prompt tuning with metadata: the setting's description and names are in the paraphrase prompt,
    # and the judge chooses from a shortlist that holds the right setting.
    requests = [r.body["messages"][-1]["content"] for r in fake_teacher.chat_requests()]
    para = next(t for t in requests if t.startswith("You write"))
    assert "- what it does: " in para and "- page: ms-settings:" in para
    judge_prompts = [t for t in requests if t.startswith("You label")]
    assert judge_prompts and all(t.count("\n- ") >= 8 for t in judge_prompts)

    served = fake_teacher.served
    again = generate_settings(cfg, fake_teacher.config(concurrency=8), progress=False)
    assert again.already_complete and fake_teacher.served == served


def test_without_the_judge_every_parsed_paraphrase_is_kept(fake_teacher, tmp_path):
    fake_teacher.replies = ScriptedTeacher()
    cfg = SettingsConfig(n=60, out=str(tmp_path / "nojudge"), teacher_share=0.5, paraphrases=3, teacher_batch=8,
                         judge=False, noise_rate=0.0)
    summary = generate_settings(cfg, fake_teacher.config(), progress=False)
    rows = read_table(tmp_path / "nojudge/settings").to_pylist()
    assert summary.totals["teacher_rows"] == 30 and any(r["query"].startswith("mislabel") for r in rows)
    assert not any(r.body["messages"][-1]["content"].startswith("You label") for r in fake_teacher.chat_requests())


def _teacher_cli(capsys, fake_teacher, monkeypatch, tmp_path, *args: str):
    from tests.clirun import run_cli

    monkeypatch.chdir(tmp_path)
    for name, value in fake_teacher.env().items():
        monkeypatch.setenv(name, value)
    (tmp_path / "textbook.toml").write_text("[settings]\nteacher_batch = 4\n\n[teacher]\nretry_base_s = 0.01\nretry_max_s = 0.05\n")
    return run_cli(capsys, "gen", "settings", "--n", "60", "--teacher-share", "0.5", "--paraphrases", "3", "--no-judge",
                   "--out", "o", *args)


def test_a_teacher_that_gives_nothing_usable_stops_the_run_with_its_reasons(fake_teacher, tmp_path, capsys, monkeypatch):
    fake_teacher.replies = "I cannot help with that."  # never the JSON asked for
    code, out, err = _teacher_cli(capsys, fake_teacher, monkeypatch, tmp_path)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: the teacher gave nothing usable: 12 of 12 teacher samples rejected "
                          "(paraphrase_failed_invalid_json 12; see o/settings-removed): use a stronger --model"), err
    assert not (tmp_path / "o/settings-report.json").exists()  # not a template-only dataset in disguise
    # everything is saved: the rejects with the raw replies, the paid replies in the cache
    removed = read_table(tmp_path / "o/settings-removed").to_pylist()
    assert len(removed) == 12 and all("I cannot help" in r["detail"] for r in removed)
    assert (tmp_path / "o/teacher-cache.sqlite").is_file()
    assert read_table(tmp_path / "o/settings").num_rows == 0


def test_a_teacher_that_gives_too_little_is_topped_up_from_templates_with_a_warning(fake_teacher, tmp_path, capsys,
                                                                                    monkeypatch):
    good, asked = ScriptedTeacher(), []

    def first_batch_only(messages):
        asked.append(1)
        return good(messages) if len(asked) <= 4 else "I cannot help with that."  # 4 seeds per batch

    fake_teacher.replies = first_batch_only
    code, out, err = _teacher_cli(capsys, fake_teacher, monkeypatch, tmp_path)
    assert code == 0, err
    assert "wrote 60 settings samples" in out and "teacher rows 12" in out
    assert ("  warning: the teacher gave 12 of 30 planned paraphrases (paraphrase_failed_invalid_json 12); "
            "templates filled the rest") in out.splitlines()


def test_reply_schemas_carry_the_bounds_the_validators_enforce_and_echoes_are_not_rewrites():
    from textbook.settings import judge, paraphrase

    para = paraphrase.schema(["casual", "question"])["properties"]["paraphrases"]
    assert para["maxItems"] == 2 and para["items"]["properties"]["style"]["enum"] == ["casual", "question"]
    assert para["items"]["properties"]["text"]["maxLength"] == paraphrase.MAX_CHARS
    verdict = judge.schema(3, ["display.brightness", "display.night_light"])["properties"]["answers"]
    assert verdict["maxItems"] == 3 and verdict["items"]["properties"]["i"]["maximum"] == 2
    assert verdict["items"]["properties"]["id"]["enum"] == ["display.brightness", "display.night_light", "none"]
    prompt = 'The request: "turn up the brightness"\nAnswer with JSON only: {"paraphrases": [{"style": "<style>", "text": "<the rewrite>"}]}'
    reply = {"paraphrases": [{"style": "casual", "text": "<the rewrite>"}, {"style": "question", "text": "Turn up the brightness"},
                             {"style": "casual", "text": "screen is way too dim"}]}
    assert paraphrase.parse(reply, ["casual", "question"], prompt) == [("casual", "screen is way too dim")]


class FirstCandidateJudge(ScriptedTeacher):
    """A judge that answers the first candidate it is shown, whatever the request (what a small model does)."""

    action = None  # None: the request's own action (so ~1/8 answers agree by chance); else always this one

    def __call__(self, messages):
        text = messages[-1]["content"]
        if not text.startswith("You label requests"):
            return super().__call__(messages)
        first = re.search(r"^- ([\w.]+): ", text, re.M).group(1)
        answers = [{"i": int(i), "id": first, "action": self.action or self.labels[r]["action"], "value": self.labels[r].get("value")}
                   for i, r in re.findall(r"^(\d+)\. (.*)$", text, re.M)]
        return json.dumps({"answers": answers})


def test_a_judge_that_always_names_the_first_candidate_is_reported(fake_teacher, tmp_path):
    fake_teacher.replies = FirstCandidateJudge()
    cfg = SettingsConfig(n=300, out=str(tmp_path / "run"), teacher_share=0.3, paraphrases=3, teacher_batch=16)
    summary = generate_settings(cfg, fake_teacher.config(concurrency=8), progress=False)
    assert any("named the first of its shuffled candidates in 100%" in w for w in summary.warnings), summary.warnings
    assert "pass --no-judge" in str(summary)
    # the sane judge of the test above raises no such warning
    fake_teacher.replies = ScriptedTeacher()
    sane = generate_settings(SettingsConfig(n=300, out=str(tmp_path / "sane"), teacher_share=0.3, paraphrases=3,
                                            teacher_batch=16), fake_teacher.config(concurrency=8), progress=False)
    assert not any("first of its shuffled" in w for w in sane.warnings)
    # with nothing kept at all, the run stops and names the judge as the cause
    fake_teacher.replies = FirstCandidateJudge()
    # it says "run" every time; seed 8 draws no action setting into the teacher's share, so nothing agrees
    fake_teacher.replies.action = "run"
    with pytest.raises(TextbookError, match="nothing usable: the judge named the first"):
        generate_settings(SettingsConfig(n=300, out=str(tmp_path / "none"), teacher_share=0.3, paraphrases=3, teacher_batch=16,
                                         seed=8), fake_teacher.config(concurrency=8, model="fake-model"), progress=False)


def test_preview_paraphrases_and_judges_a_few_seeds_and_writes_nothing(fake_teacher, tmp_path, capsys, monkeypatch):
    from tests.clirun import run_cli

    fake_teacher.replies = ScriptedTeacher()
    for name, value in fake_teacher.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    # no noise: a noised paraphrase that became unrecognisable would be a fourth kind of row here
    code, out, err = run_cli(capsys, "gen", "settings", "--preview", "3", "--paraphrases", "3", "--noise-rate", "0", "--out", "s")
    assert code == 0, err
    assert out.count("\nkept     [") + out.startswith("kept     [") == 6 and out.count("dropped  judge_none: 'mislabel") == 3, out
    assert "preview: 3 seeds: 6 samples would be kept, 3 dropped (judge_none 3); 6 requests sent, nothing written" in out
    assert not (tmp_path / "s").exists()
    code, _, err = run_cli(capsys, "gen", "settings", "--preview", "3", "--offline")
    assert code == 2 and "needs a teacher" in err


def test_the_judge_prompt_lists_each_candidates_values_and_is_the_same_every_time():
    from textbook.prompts import Prompts
    from textbook.settings import judge
    from textbook.settings.catalogue import load_catalogue

    catalogue = load_catalogue()
    enum = next(s for s in catalogue.settings if s.type == "enum")
    first = judge.render(Prompts(), [enum], ["make it dark"])[0]["content"]
    again = judge.render(Prompts(), [enum], ["make it dark"])[0]["content"]
    assert first == again and "built-in method" not in first  # a stable prompt: the response cache can replay it
    assert f"[enum: {judge.describe_values(enum)}]" in first
