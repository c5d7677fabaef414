"""A settings catalogue: the settings a model may call, loaded from YAML and validated.

Contract (stable; `textbook eval settings` hands a catalogue to the trainer's evaluator):
    load_catalogue(path=None) -> Catalogue      # None = the bundled Windows catalogue
    Catalogue.settings (tuple[Setting]), Catalogue.get(id) -> Setting | None
    Setting.actions -> the target actions it accepts (textbook/contract.py validates calls against them)
    validate_catalogue_file(path) -> list[str]  # every problem as "FILE:LINE: where: what"

The format is documented in textbook/settings/FORMAT.md. Types: page (open only), toggle (on/off),
range (min, max, step, unit; set/increase/decrease), enum (options; set, and increase/decrease when
`ordered`), action (a button: run). Every non-page entry lives on a page: its `uri` must be the
`uri` of a page entry in the same file, which is how "unknown URI" is caught.
"""

from __future__ import annotations

from pathlib import Path

from textbook.settings.catalogue_file import check_text
from textbook.settings.setting import TYPES, Catalogue, CatalogueError, Option, Setting

__all__ = ["BUNDLED", "TYPES", "Catalogue", "CatalogueError", "Option", "Setting", "describe_catalogue", "load_catalogue",
           "validate_catalogue_file"]

BUNDLED = Path(__file__).resolve().parent / "catalogues" / "windows.yaml"


def validate_catalogue_file(path: str | Path) -> list[str]:
    """Every problem in a catalogue file, each as 'FILE:LINE: where: what' (empty list = valid)."""
    path = Path(path)
    if not path.is_file():
        return [f"{path}:0: no such file"]
    return check_text(str(path), path.read_text(encoding="utf-8"))[1]


_CACHE: dict[str, Catalogue] = {}


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load and validate a catalogue (None = bundled Windows); raise CatalogueError listing every problem."""
    path = Path(path) if path is not None else BUNDLED
    if not path.is_file():
        raise CatalogueError(f"catalogue {path} does not exist: pass an existing YAML file to --catalogue")
    text = path.read_text(encoding="utf-8")
    key = f"{path.resolve()}\0{hash(text)}"
    if key not in _CACHE:
        cat, errors = check_text(str(path), text)
        if errors:
            shown = "\n  ".join(errors[:50]) + (f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else "")
            raise CatalogueError(f"catalogue {path} has {len(errors)} problem(s); fix them and rerun:\n  {shown}")
        _CACHE[key] = cat
    return _CACHE[key]


def describe_catalogue(path: str | Path | None = None) -> str:
    """What a catalogue holds, after validating it (for --check-catalogue)."""
    cat = load_catalogue(path)
    kinds: dict[str, int] = {}
    for s in cat.settings:
        kinds[s.type] = kinds.get(s.type, 0) + 1
    with_words = sum(1 for s in cat.settings if s.words or s.synonyms)
    with_problems = sum(1 for s in cat.settings if s.problems)
    problems = sum(len(t) for s in cat.settings for t in s.problems.values())
    phrases = sum(len(t) for s in cat.settings for t in s.phrases.values())
    suppressing = sum(1 for s in cat.settings if s.suppresses)
    return "\n".join([
        f"{cat.path}: valid catalogue {cat.name!r} with {len(cat)} settings",
        "  " + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())),
        f"  {with_words} with synonyms or everyday words, {with_problems} with problem statements",
        f"  {problems:,} problem statements, {phrases:,} phrases; {suppressing} toggles name what they suppress",
    ])
