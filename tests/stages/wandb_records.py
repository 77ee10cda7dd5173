"""Read the records of an offline W&B run file (run-<id>.wandb) for tests.

The file is wandb's transaction log: a 7-byte header (":W&B", magic, version), then
LevelDB-style chunks in 32 KiB blocks (CRC32 4 bytes, length 2, type 1 = full / 2 first /
3 middle / 4 last), each record a `wandb_internal_pb2.Record`.
"""
from __future__ import annotations

import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7


def records(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, chunk = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def offline_runs(directory: Path, wait_s: float = 30) -> dict[str, dict]:
    """{display name: {"job_type", "group", "history": [{key: value}], "config": {key}}}.

    `run.finish()` returns before wandb's service has written the file out: wait (at most
    `wait_s`) until each run file ends with its exit record."""
    runs = {}
    for path in sorted(directory.glob("wandb/offline-run-*/run-*.wandb")):
        deadline = time.monotonic() + wait_s
        while (not any(r.WhichOneof("record_type") == "exit" for r in records(path))
               and time.monotonic() < deadline):
            time.sleep(0.2)
        run = {"history": [], "config": set()}
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(job_type=record.run.job_type, group=record.run.run_group,
                           name=record.run.display_name)
                run["config"] |= {item.key for item in record.run.config.update}
            elif kind == "history":
                run["history"].append({item.key or "/".join(item.nested_key): item.value_json
                                       for item in record.history.item})
        runs[run["name"]] = run
    return runs
