"""The import path that perfkit/trial.py, gate.py, the profilers and their tests use for the
records' storage and TrialResult. The records live in perfkit/records/; new code imports from there."""

from perfkit.records.store import ResultsError, atomic_write_text, machine_info, read_json, write_json
from perfkit.records.trial import TrialResult

__all__ = ["ResultsError", "TrialResult", "atomic_write_text", "machine_info", "read_json", "write_json"]
