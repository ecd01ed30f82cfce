"""What mmbcn's packages share and that is no concept of its own: the shipped config files
(:mod:`.config_files`), what the installed torch offers (:mod:`.feature_probes`), tables
(:mod:`.tables`) and old import paths kept for a release (:mod:`.deprecation`).

Nothing is imported here, so that each of these stays cheap to import on its own."""
