"""textbook: make small language models good through data (the phi / Mu recipe)."""

__version__ = "0.1.0"
