"""The record types of `textbook gen`'s streams: one dataclass per stream, flat so Arrow readers need no help.

Every row carries its plan id (what makes resume exact) and its constraints and provenance (which
template and prompt produced it, from which model with which sampling parameters, at what cost).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Planned:
    """What the plan asked for: the constraints that made this prompt different from the others."""

    plan_id: int
    topic: str
    topic_path: list[str]
    audience: str
    style: str
    difficulty: str
    words: list[str]
    function_name: str | None


@dataclass(slots=True)
class Generated(Planned):
    """Provenance of one teacher reply."""

    template: str
    template_sha: str
    prompt_sha: str
    model: str
    sampling: str  # JSON of the sampling parameters sent (temperature, top_p, max_tokens, seed)
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    latency_s: float
    created_at: str  # ISO 8601, UTC


@dataclass(slots=True)
class TextbookRow(Generated):
    """A textbook section: Markdown prose with runnable code (phi-1's synthetic textbooks)."""

    text: str


@dataclass(slots=True)
class ExerciseRow(Generated):
    """A CodeExercises-style problem (phi-1) whose solution passed its tests in the sandbox."""

    prompt: str  # signature + docstring: what a model is asked to complete
    solution: str
    tests: str
    run_s: float  # sandbox wall time of solution + tests


@dataclass(slots=True)
class RejectRow(Generated):
    """A plan item that produced no row, with why and the raw output (empty when the teacher sent none)."""

    reason: str  # short and countable: teacher_length, parse_no_code, exec_failed, near_duplicate, ...
    detail: str  # the error message, traceback tail or the id of the row it duplicates
    raw: str


@dataclass(slots=True)
class PromptRow(Planned):
    """A rendered request of a --dry-run: inspect it, or send the batch file through a batch API."""

    custom_id: str
    template: str
    template_sha: str
    prompt_sha: str
    model: str
    sampling: str
    messages: str  # JSON list of chat messages, exactly what the teacher would receive
    est_prompt_tokens: int


ROWS = {"textbook": TextbookRow, "exercises": ExerciseRow}
