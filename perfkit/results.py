"""The older import path of the records' storage and TrialResult, still used by perfkit/trial.py,
gate.py, the profilers, cli_tools.py's profile and gate commands and tests/test_gate.py. The
records live in perfkit/records/; new code imports from there, and this module goes once those move."""

from perfkit.records.store import ResultsError, atomic_write_text, machine_info, read_json, write_json
from perfkit.records.trial import TrialResult

__all__ = ["ResultsError", "TrialResult", "atomic_write_text", "machine_info", "read_json", "write_json"]
