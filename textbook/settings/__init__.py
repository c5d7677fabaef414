"""Settings-agent data: a request typed into a Settings search box -> one settings function call.

Public contract (stable; the trainer imports it):
    textbook.settings.target: parse_target(text) -> Target, validate_target(target, catalogue) -> list[str],
        load_catalogue(path=None) -> Catalogue (None = the bundled Windows catalogue), format_target, canonical
    textbook.settings.records.SettingsSample: the columns of OUT/settings/ shards
Formats: textbook/settings/FORMAT.md. Nothing is imported here, so `import textbook.settings.target` stays light.
"""
