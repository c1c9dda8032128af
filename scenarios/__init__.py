"""Scenario presets shipped with satlink (installed as the package ``satlink.presets``)."""
