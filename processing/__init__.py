"""Pure polars functions from frames to frames: validation, dedup, per-GPU rows. No I/O."""
