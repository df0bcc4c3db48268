"""Contract tests: one suite, run against the in-process fake and the real source."""
