"""The real broker of the integration tests (Tansu, or ``ORBITWATCH_TEST_BOOTSTRAP``), for the Kafka backend.

Defined in ``tests/integration/conftest.py``; re-registered here (a session fixture per directory: a run of
both directories starts one broker for each).
"""

from __future__ import annotations

from tests.integration.conftest import bootstrap

__all__ = ["bootstrap"]
