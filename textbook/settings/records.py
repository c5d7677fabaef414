"""The records of `textbook gen settings`: one dataclass per stream (samples, removed samples).

Contract with the trainer (stable): OUT/settings/ holds SettingsSample shards; textbook/contract.py names
the columns the trainer reads (tests/test_contract.py checks they are fields here). `target` is the
canonical JSON call (the grammar in contract.py), `value` is the value as JSON text or null, `split` is
train/validation/test with every paraphrase and noised variant of a seed in its seed's split (`seed_id`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SettingsSample:
    query: str  # what the user typed (noised when noise_ops is not empty)
    target: str  # canonical call, e.g. {"action":"set","id":"display.brightness","value":70}
    id: str | None  # setting id; None for out-of-scope requests
    uri: str | None  # the ms-settings: page of the setting
    action: str  # none | open | on | off | set | increase | decrease | run
    value: str | None  # JSON text of the value ("70", "\"dark\""), None when the call has no value
    style: str  # command | question | keyword | problem | negation | polite | casual | verbose | out_of_scope
    noise_ops: list[str]  # noise operations applied, in order
    source: str  # template | teacher
    split: str  # train | validation | test
    seed_id: str  # group key: the seed this sample came from
    clean_query: str  # the query before noise


@dataclass(slots=True)
class RemovedSample:
    query: str
    clean_query: str
    target: str  # the label the sample would have had
    source: str
    style: str
    noise_ops: list[str]
    reason: str  # noise_unrecognisable | judge_other_setting | judge_other_action | judge_other_value | judge_none
    detail: str  # e.g. the judge's answer as JSON
