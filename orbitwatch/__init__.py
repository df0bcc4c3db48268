"""orbitwatch: the wiring on top of ``ingest``, ``processing`` and ``storage`` (daemon, CLI, demo)."""
