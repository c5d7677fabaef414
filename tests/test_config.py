"""Config precedence (CLI > file > env > defaults), type coercion, secrets kept out of manifests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from textbook.config import load_config_file, public_dict, resolve, secret
from textbook.errors import ConfigError
from textbook.prompts import Prompts
from textbook.errors import TextbookError
from textbook.teacher.config import TeacherConfig, require_teacher, resolve_teacher


@dataclass(frozen=True, slots=True)
class Stage:
    name: str = "default"
    size: int = 3
    rate: float = 0.5
    fast: bool = False
    words: tuple[str, ...] = ("a",)
    token: str | None = secret()


ENV = {"name": "T_NAME", "size": "T_SIZE", "fast": "T_FAST", "words": "T_WORDS", "token": "T_TOKEN"}


def test_precedence_cli_file_env_default():
    environ = {"T_NAME": "env", "T_SIZE": "7", "T_FAST": "yes", "T_WORDS": "x, y"}
    cfg = resolve(Stage, cli={"name": "cli", "size": None}, file={"size": 5}, env=ENV, environ=environ)
    assert cfg == Stage(name="cli", size=5, rate=0.5, fast=True, words=("x", "y"))
    assert resolve(Stage, env=ENV, environ={}) == Stage()


def test_bad_values_and_unknown_keys_are_config_errors():
    with pytest.raises(ConfigError, match="T_SIZE"):
        resolve(Stage, env=ENV, environ={"T_SIZE": "many"})
    with pytest.raises(ConfigError, match="unknown key.*sise.*known keys"):
        resolve(Stage, file={"sise": 1}, section="stage")


def test_secrets_never_in_public_dict():
    cfg = resolve(Stage, env=ENV, environ={"T_TOKEN": "sk-secret"})
    assert cfg.token == "sk-secret"
    assert "token" not in public_dict(cfg) and "sk-secret" not in repr(cfg)


@pytest.mark.parametrize("given, public", [
    ("http://user:SECRET@host:8080/v1", "http://host:8080/v1"),
    ("https://TOKEN@git.example.com/x.git", "https://git.example.com/x.git"),
    ("https://h/v1?api-version=2024-06-01&api-key=SECRET", "https://h/v1?api-version=2024-06-01&api-key=REDACTED"),
    ("https://h/x?key=S&api_key=S&apikey=S&token=S&access_token=S&sig=S&X-Amz-Signature=S&password=S&client_secret=S",
     "https://h/x?key=REDACTED&api_key=REDACTED&apikey=REDACTED&token=REDACTED&access_token=REDACTED&sig=REDACTED"
     "&X-Amz-Signature=REDACTED&password=REDACTED&client_secret=REDACTED"),
    ("https://h/cb#access_token=SECRET&state=1", "https://h/cb#access_token=REDACTED&state=1"),
    ("http://localhost:11434/v1", "http://localhost:11434/v1"),  # nothing to strip: unchanged, to the byte
    ("https://h/x?monkey=1&keyboard=2", "https://h/x?monkey=1&keyboard=2"),
    ("python lists", "python lists"),
])
def test_public_dict_strips_credentials_from_urls(given, public):
    @dataclass(frozen=True)
    class C:
        url: str | None = None
        urls: tuple[str, ...] = ()
        extra: dict | None = None

    got = public_dict(C(url=given, urls=(given,), extra={"u": [given]}))
    assert got == {"url": public, "urls": [public], "extra": {"u": [public]}}
    assert "SECRET" not in str(got) and public_dict(C()) == {"url": None, "urls": [], "extra": None}


def test_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config_file(None) == {}
    (tmp_path / "textbook.toml").write_text('[teacher]\nmodel = "m"\nconcurrency = 4\n')
    cfg = resolve_teacher({"concurrency": 8}, load_config_file(None), environ={"OPENAI_API_KEY": "k"})
    assert (cfg.model, cfg.concurrency, cfg.api_key) == ("m", 8, "k")
    (tmp_path / "bad.toml").write_text("[teacher\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")


def test_require_teacher_names_the_ways_to_configure():
    with pytest.raises(ConfigError, match="--model.*TEXTBOOK_MODEL.*textbook.toml") as info:
        require_teacher(TeacherConfig())
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        require_teacher(TeacherConfig(model="gpt-4o-mini"))
    assert require_teacher(TeacherConfig(model="llama3", base_url="http://localhost:11434/v1")).model == "llama3"


def test_prompt_override_and_strict_undefined(tmp_path):
    (tmp_path / "mine.j2").write_text("Hello {{ who }}")
    prompts = Prompts(tmp_path)
    assert prompts.render("mine", who="you") == "Hello you\n"
    assert len(prompts.get("mine").sha256) == 16
    with pytest.raises(TextbookError, match="needs a value"):
        prompts.render("mine")
    with pytest.raises(TextbookError, match="no prompt template nothere.j2"):
        prompts.get("nothere")
    with pytest.raises(TextbookError, match="does not exist"):
        Prompts(tmp_path / "missing")
