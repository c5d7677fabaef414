"""Settings-agent data: a request typed into a Settings search box -> one settings function call.

Public contract (stable): the trainer reads OUT/settings/ shards only, whose columns are
textbook.settings.records.SettingsSample; the call grammar of their `target` column (parse_target,
validate_target, format_target, canonical) and the column names it reads live in textbook.contract,
which both sides import. textbook.settings.catalogue.load_catalogue(path=None) loads a catalogue
(None = the bundled Windows one). Formats: textbook/settings/FORMAT.md.
"""
