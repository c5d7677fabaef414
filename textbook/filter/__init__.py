"""Web text filtering: heuristics -> exact + MinHash dedup -> educational-value classifier.

The pipeline (run.py) reads Parquet/JSONL/Arrow in batches (inputs.py), analyses each batch in
worker processes (analyse.py: heuristics.py + repetition.py, textbook.minhash, classifier.py over
features.py), decides dedup and thresholds from compact per-document numbers (dedup.py), then writes
kept/ and removed/ shards (table.py) and the report (report.py). Presets: filters/*.yaml (config.py).
Labels and models: annotate.py (teacher), train.py.
"""
