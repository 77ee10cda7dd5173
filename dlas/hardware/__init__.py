"""Hardware layer: targets, the RPC tracker/server lifecycle, sessions and remote measurement."""
from __future__ import annotations

from dlas.hardware.base import Hardware, LocalCPU, LocalCUDA, RemoteBoard, make_target
from dlas.hardware.calls import ConnectionLost, RemoteTimeout
from dlas.hardware.local_rpc import LocalRPC
from dlas.hardware.measure import Measurement, MeasureResult, latency_stats
from dlas.hardware.session import RemoteSession
from dlas.hardware.tracker import check_key, registered_keys, tracker_summary

__all__ = ["Hardware", "LocalCPU", "LocalCUDA", "RemoteBoard", "make_target", "RemoteSession",
           "Measurement", "MeasureResult", "latency_stats", "RemoteTimeout", "ConnectionLost", "tracker_summary",
           "registered_keys", "check_key", "LocalRPC"]
