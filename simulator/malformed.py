"""Messages no strict decoder can accept, as misconfigured producers and bad links make them."""

from __future__ import annotations

import json
import random

from ingest.wire import header as wire_header
from simulator.codec import HEADER_SIZE, ContractCodec
from simulator.truth import MalformedKind

UNKNOWN_SCHEMA_IDS = (0, 3, 7, 99, 4242)
MAX_ATTEMPTS = 1000


def _candidate(kind: MalformedKind, valid: bytes, key: bytes, rng: random.Random, codec: ContractCodec) -> bytes:
    if kind == "bad_magic":
        payload = {
            "rack_id": key.decode(),
            "frame_seq": rng.randrange(100_000),
            "util_pct": rng.random() * 100,
        }
        return json.dumps(payload).encode()
    if kind == "unknown_schema_id":
        schema_id = rng.choice([i for i in UNKNOWN_SCHEMA_IDS if i not in codec.schemas])
        return wire_header(schema_id) + valid[HEADER_SIZE:]
    if kind == "truncated":
        return valid[: rng.randint(HEADER_SIZE, len(valid) - 1)]
    if kind == "trailing_garbage":
        return valid + rng.randbytes(rng.randint(1, 16))
    return valid[:HEADER_SIZE] + rng.randbytes(rng.randint(16, 4096))


def make_malformed(kind: MalformedKind, valid: bytes, key: bytes, rng: random.Random, codec: ContractCodec) -> bytes:
    """A malformed variant of the valid message ``valid``, checked to be undecodable by ``codec``."""
    for _ in range(MAX_ATTEMPTS):
        value = _candidate(kind, valid, key, rng, codec)
        if not codec.is_strictly_decodable(value):
            return value
    raise RuntimeError(f"could not make an undecodable {kind} message")  # pragma: no cover
