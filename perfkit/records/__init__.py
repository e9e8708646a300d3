"""One versioned record per command's output (DESIGN: "records").

  store.py     the versioned JSON form (schema_version + kind, history), atomic writes, machine metadata
  trial.py     TrialResult: one trial (`perfkit run`'s trial.json; each trial of a compare)
  compare.py   CompareResult: `perfkit compare`'s sps.json, and every number derived from it
  diagnose.py  DiagnoseResult: `perfkit diagnose`'s diagnose.json
  gate.py      GateRecord (with CheckResult, Measurement, GateRule): `perfkit gate`'s gate.json
  profile.py   ProfileRecord: `perfkit profile`'s profile.json, and the profilers' overhead from it

Each record is a dataclass with `save(path)` / `load(path)`; numbers derived from it are computed
here once, and perfkit/render/ only formats them. `perfkit report DIR` re-renders any of them
(perfkit/render/report.py: REPORTS).
"""
