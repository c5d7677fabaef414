"""[export] in textbook.toml and the export flags: one frozen config, CLI > file > defaults."""

from __future__ import annotations

import pytest

from textbook.config import resolve
from textbook.errors import ConfigError
from textbook.export.config import ExportConfig


def test_file_values_and_cli_precedence():
    file = {"quantize": ["int8", "a16w8"], "max_source_len": 32, "calibration": "out/settings"}
    cfg = resolve(ExportConfig, cli={"max_source_len": 24, "quantize": None}, file=file, section="export")
    assert cfg.quantize == ("int8", "a16w8") and cfg.variants == ("int8", "a16w8")
    assert cfg.max_source_len == 24 and cfg.calibration == "out/settings" and cfg.parity_split == "test"


def test_defaults_are_fp32_only():
    assert ExportConfig().variants == () and ExportConfig(quantize=("none", "int8", "int8")).variants == ("int8",)


@pytest.mark.parametrize(
    "values, message",
    [({"quantize": ("int4",)}, "unknown --quantize int4"), ({"max_source_len": 1}, "--max-source-len must be at least 2"),
     ({"parity_samples": 0}, "at least 1")],
)
def test_bad_values_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        ExportConfig(**values)


def test_unknown_key_in_the_file():
    with pytest.raises(ConfigError, match="unknown key"):
        resolve(ExportConfig, file={"quantise": "int8"}, section="export")
