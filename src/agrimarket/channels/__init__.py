"""The channel port, its registry of plugins, and the built-in channels (one package each)."""
