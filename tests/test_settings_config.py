"""Which catalogue settings shards are checked against (what `textbook eval settings` passes the evaluator)."""

from __future__ import annotations

import pyarrow as pa

from textbook.settings.catalogue import BUNDLED
from textbook.settings.config import catalogue_for
from textbook.shards import ShardWriter

ONE_PAGE = ('name: one\nsettings:\n  - {id: page.display, type: page, uri: "ms-settings:display", '
            'category: System, name: Display, description: Brightness and scale.}\n')


def _shards(directory, config: dict | None):
    with ShardWriter(directory, pa.schema([("query", pa.string()), ("target", pa.string())]), meta={"config": config} if config else None) as writer:
        writer.write({"query": "open display settings", "target": '{"action":"open","id":"page.display"}'})
    return directory


def test_the_catalogue_the_shards_were_generated_from_else_the_bundled_one(tmp_path):
    (tmp_path / "one.yaml").write_text(ONE_PAGE)
    generated = _shards(tmp_path / "a", {"catalogue": str(tmp_path / "one.yaml")})
    plain = _shards(tmp_path / "b", None)
    assert catalogue_for([plain, generated]).path == str(tmp_path / "one.yaml")  # the first manifest that names one
    assert catalogue_for([plain]).path == str(BUNDLED)
    assert catalogue_for([generated], BUNDLED).path == str(BUNDLED)  # --catalogue wins
