"""textbook: make small language models good through data (the phi / Mu recipe).

The map: each command is a thin typer shell in `textbook/cli/` that does three things: resolve its frozen
config (`textbook.config.resolve`: flags > --config file > environment > the dataclass defaults), call one
library function, and print the `textbook.report.Report` it returns (`textbook.cli.options.show`). Each
function that writes into OUT holds it through `textbook.rundir.RunDir` (lock, fingerprint, completion).

    textbook gen                 textbook.gen.run.generate
    textbook gen settings        textbook.settings.run.generate_settings
    textbook filter              textbook.filter.run.run_filter (its steps: textbook.filter.steps)
    textbook filter annotate     textbook.filter.annotate.annotate
    textbook filter train        textbook.filter.train.train
    textbook filter score        textbook.filter.score.score_files
    textbook shards              textbook.summary.describe_shards
    textbook shards merge        textbook.merge.merge_slices
    textbook tokenizer train     textbook.mu.tokenizer.build
    textbook train               textbook.mu.train.train
    textbook eval settings | lm  textbook.mu.eval.eval_settings | eval_lm
    textbook eval compare        textbook.mu.compare.compare
    textbook export              textbook.export.exporter.export_run
    textbook infer               textbook.export.runner.Runner (--bench: textbook.export.bench.bench)

Shared by all: textbook.config (flags > textbook.toml > environment > defaults), textbook.errors (the error
types and exit codes), textbook.shards (Arrow shards and manifests: the only contract between the data
side and the model side, with textbook.contract for the settings call grammar and column names),
textbook.rundir (one run per --out, what changed between runs), textbook.workers (worker processes that
die with their parent), textbook.teacher (any OpenAI-compatible endpoint).
"""

__version__ = "0.1.0"
