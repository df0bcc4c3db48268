"""Alert rules on the processed windows: YAML rules files (``alerting.rules``), evaluation (``alerting.evaluate``)."""
