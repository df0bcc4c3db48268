"""Processing cost by fleet shape: the same number of GPU samples as backlogs of different widths and orders,
each measured side by side in one run as the consume+decode ceiling, the backbone (raw rows only,
``processing.enabled = false``) and the full daemon (raw rows and every derived table), with peak RSS.

Shapes (``--samples`` GPU samples each, 2.3M by default; continuous contact, no loss):

- **a** 40 racks in order;
- **b** 1,000 racks in order;
- **c** 5,000 racks in order;
- **d** 1,000 racks with realistic passes: the first 40% of each rack's frames (by ``frame_seq``) were
  sampled 20-90 minutes (uniform, per rack) before the rest and are played back from on-board storage
  (``stored = true``) as one burst at 10 frames/s, starting at a random moment of the rack's live frames, so
  they interleave with every rack's live frames; plus 5% duplicates (the simulator's, up to 2 s later);
- **e** the backlog of (b) in a random order (every frame out of order).

For each shape the backlog is produced once into its own topic; then ``--runs`` rounds each run the three
modes as fresh processes (``tests.bench.ingest_child``) over the same messages. Each shape prints its
medians; the last line is one JSON object with every shape's medians.

    .venv/bin/python -m tests.bench.fleet_shape [--shapes abcde] [--samples 2300000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import timedelta

from ingest.admin import create_topic
from simulator.codec import ContractCodec
from simulator.config import GPUS_PER_RACK, SimulationConfig
from simulator.messages import SimMessage, generate
from simulator.produce import produce
from tests.bench.common import PARTITIONS, broker, median, run_child

SHAPES = {
    "a": "40 racks in order",
    "b": "1,000 racks in order",
    "c": "5,000 racks in order",
    "d": "1,000 racks, 40% played back 20-90 min late in bursts, 5% duplicates",
    "e": "1,000 racks, every frame shuffled",
}
RACKS = {"a": 40, "b": 1000, "c": 5000, "d": 1000, "e": 1000}
LATE_SHARE = 0.4
LATE_MINUTES = (20, 90)
PLAYBACK_PER_S = 10
DUPLICATE_RATE = 0.05


def shape_messages(shape: str, samples: int, seed: int = 1) -> list[SimMessage]:
    """The messages of ``shape`` in the order they reach Kafka (about ``samples`` GPU samples, duplicates aside)."""
    racks = RACKS[shape]
    seconds = max(1, round(samples / GPUS_PER_RACK / racks))
    config = SimulationConfig(
        satellites=racks // 4,
        racks_per_satellite=4,
        duration_s=seconds,
        contact="continuous",
        seed=seed,
        duplicate_rate=DUPLICATE_RATE if shape == "d" else 0.0,
        loss_rate=0.0,
    )
    messages = list(generate(config)[0])
    if shape == "d":
        return played_back_late(messages, random.Random(seed))
    if shape == "e":
        random.Random(seed).shuffle(messages)
    return messages


def played_back_late(messages: list[SimMessage], rng: random.Random) -> list[SimMessage]:
    """Re-time the first ``LATE_SHARE`` of each rack's frames as sampled 20-90 minutes earlier and played back
    in one burst during the rack's live frames; the rest (and the duplicates) keep their bytes and times."""
    codec = ContractCodec()
    by_rack: dict[bytes, list[tuple[int, int, SimMessage]]] = {}
    for message in messages:
        _, record = codec.decode(message.value)
        by_rack.setdefault(message.key, []).append((int(record["frame_seq"]), message.timestamp_ms, message))
    out: list[SimMessage] = []
    for frames in by_rack.values():
        seqs = sorted({seq for seq, _, _ in frames})
        late = set(seqs[: round(len(seqs) * LATE_SHARE)])
        live = [(at, m) for seq, at, m in frames if seq not in late]
        out.extend(m for _, m in live)
        if not late:
            continue
        shift = timedelta(minutes=rng.uniform(*LATE_MINUTES))
        burst_ms = rng.choice(live)[0] if live else frames[0][1]
        played = sorted(((seq, m) for seq, _, m in frames if seq in late), key=lambda p: p[0])
        for index, (_, message) in enumerate(played):
            schema_id, record = codec.decode(message.value)
            record["sampled_at"] = record["sampled_at"] - shift
            record["stored"] = True
            at_ms = burst_ms + index * 1000 // PLAYBACK_PER_S
            out.append(SimMessage(message.key, codec.encode(schema_id, record), at_ms))
    out.sort(key=lambda m: m.timestamp_ms)
    return out


def measure_shape(servers: str, shape: str, samples: int, runs: int, batch: int) -> dict[str, float]:
    """Produce the shape's backlog, then ``runs`` rounds of consume, backbone and daemon over it; medians."""
    topic = f"bench-shape-{shape}"
    messages = shape_messages(shape, samples)
    create_topic(servers, topic, PARTITIONS)
    sent = produce(messages, servers, topic)
    print(f"shape {shape} ({SHAPES[shape]}): {sent:,} messages", flush=True)
    rounds: dict[str, list[dict[str, float]]] = {"consume": [], "backbone": [], "daemon": []}
    common = ["--servers", servers, "--topic", topic, "--messages", str(sent), "--batch", str(batch)]
    for run in range(runs):
        for mode, results in rounds.items():
            results.append(run_child("tests.bench.ingest_child", mode, *common))
        print(
            f"  run {run + 1}: consume+decode {rounds['consume'][-1]['samples_per_s']:,.0f}/s, "
            f"backbone {rounds['backbone'][-1]['samples_per_s']:,.0f}/s "
            f"({rounds['backbone'][-1]['peak_rss_mib']:.0f} MiB), "
            f"daemon {rounds['daemon'][-1]['samples_per_s']:,.0f}/s "
            f"({rounds['daemon'][-1]['peak_rss_mib']:.0f} MiB)",
            flush=True,
        )
    kept = [d["samples_per_s"] / b["samples_per_s"] for b, d in zip(rounds["backbone"], rounds["daemon"], strict=True)]
    figures = {
        "samples": rounds["daemon"][0]["samples"],
        "consume_decode_per_s": round(median([r["samples_per_s"] for r in rounds["consume"]])),
        "backbone_per_s": round(median([r["samples_per_s"] for r in rounds["backbone"]])),
        "daemon_per_s": round(median([r["samples_per_s"] for r in rounds["daemon"]])),
        "daemon_vs_backbone": round(median(kept), 3),
        "backbone_peak_rss_mib": round(median([r["peak_rss_mib"] for r in rounds["backbone"]])),
        "daemon_peak_rss_mib": round(median([r["peak_rss_mib"] for r in rounds["daemon"]])),
    }
    print(f"  medians: {json.dumps(figures)}", flush=True)
    return figures


def main() -> None:
    """Measure every chosen shape against one broker and print each shape's medians as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="abcde", help="which shapes, e.g. 'bd' (default: all)")
    parser.add_argument("--samples", type=int, default=2_300_000, help="GPU samples per backlog")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4000, help="daemon.max_batch_messages")
    args = parser.parse_args()
    unknown = set(args.shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shape(s) {''.join(sorted(unknown))}; known: {''.join(SHAPES)}")
    summary: dict[str, float] = {}
    with broker() as servers:
        for shape in args.shapes:
            for name, value in measure_shape(servers, shape, args.samples, args.runs, args.batch).items():
                summary[f"{shape}_{name}"] = value
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
