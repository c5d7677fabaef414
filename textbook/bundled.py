"""Where the bundled data lives: inside the wheel (textbook/_data) or, in a source checkout, at the repo top."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the bundled `prompts/` or `filters/` directory, wherever this install keeps it."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled directory {name!r} is missing from this install")


def preset_names() -> list[str]:
    """The bundled filter presets, the stems of filters/*.yaml, sorted."""
    return sorted(p.stem for p in data_dir("filters").glob("*.yaml"))
