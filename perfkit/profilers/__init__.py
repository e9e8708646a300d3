"""Profilers that wrap a trial process: each returns artifacts and the SPS it measured."""


class ProfilerUnavailable(RuntimeError):
    """The profiler cannot run here; the message says why and how to fix it."""
