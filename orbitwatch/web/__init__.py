"""``orbitwatch web``: the operators' view of the fleet, its racks, alerts and tenants, live.

A process of its own (Flask on the shared HTTP edge, ``orbitwatch.http_edge``) that reads every shard
through its daemon's query service, with the same guards and pacing as any client, so ingestion keeps
priority; without a running daemon it opens the history file read-only.

- ``sources``: where the data comes from (query services or files), several shards as one fleet;
- ``pages``: the SQL of each page and the shaping of its rows (no HTTP);
- ``live``: the watcher of the daemons' last commits, and the server-sent events pushed to open pages;
- ``app``: the Flask application (routes, templates, actions, the assets shipped in the package);
- ``server``: the application and the live updates on the HTTP edge (``orbitwatch.web_cmd`` runs it).
"""
