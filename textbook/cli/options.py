"""Options several commands share, defined once so their flags and help read the same everywhere."""

import typer

MODEL = typer.Option(None, "--model", "-m", help="Teacher model (or TEXTBOOK_MODEL).")
BASE_URL = typer.Option(
    None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (or OPENAI_BASE_URL)."
)
API_KEY = typer.Option(None, "--api-key", help="API key (better: OPENAI_API_KEY). Never written anywhere.", show_default=False)
FORMAT = typer.Option(
    None, "--format", help="arrow (IPC file), arrow-stream (for datasets.Dataset.from_file) or parquet. (default: arrow)"
)
