"""kafka-python's recovered errors are logged on one line, without the library's traceback."""

from __future__ import annotations

import io
import logging

from orbitwatch.cli_common import LibraryErrorsOnOneLine


def _log_through_filter(name: str) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(LibraryErrorsOnOneLine())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            None.recv(4096)  # type: ignore[attr-defined]
        except AttributeError:
            logger.exception("%s: Error receiving network data closing socket", "<conn node=1>")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_a_kafka_python_exception_record_becomes_one_line_with_the_exception_text() -> None:
    text = _log_through_filter("kafka.net.transport")
    assert "Traceback" not in text
    assert text.count("\n") == 1
    assert text.startswith("<conn node=1>: Error receiving network data closing socket: AttributeError: ")
    assert "'NoneType' object has no attribute 'recv'" in text


def test_our_own_exception_records_keep_their_traceback() -> None:
    text = _log_through_filter("orbitwatch.daemon")
    assert "Traceback (most recent call last)" in text
