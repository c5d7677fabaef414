"""Synthetic data from a teacher LLM: topic trees, a stratified plan, textbooks and verified exercises.

The pipeline is a list of plain steps (see run.py): topics -> plan -> render -> teacher -> parse ->
verify (sandbox, exercises only) -> strip boilerplate -> near-duplicate filter -> Arrow shards.
"""
