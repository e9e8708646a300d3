"""One versioned record per command's output.

  store.py     the versioned JSON form (schema_version + kind, history), atomic writes, machine metadata,
               and Field: every value a record reads is checked on load (ResultsError naming file, key, value)
  trial.py     TrialResult: one trial (`perfkit run`'s trial.json; each trial of a compare)
  compare.py   CompareResult: `perfkit compare`'s sps.json, and every number derived from it
  diagnose.py  DiagnoseResult: `perfkit diagnose`'s diagnose.json
  gate.py      GateRecord (with CheckResult, Measurement, GateRule): `perfkit gate`'s gate.json
  profiling.py ProfileRecord: `perfkit profile`'s profile.json, and the profilers' overhead from it
  explain.py   ExplainRecord (Explanation, Delta, FrameChange, GpuSummary): `perfkit explain`'s explain.json
  bisection.py BisectRecord: `perfkit bisect`'s bisect.json
  blocks.py    a compare's rounds as blocks (steps, seconds, phases, the samples inside each): what
               explain and compare --flamegraph read

Each record is a dataclass with `save(path)` / `load(path)`; numbers derived from it are computed
here once, and perfkit/render/ only formats them. Records import perfkit.core only.
`perfkit report DIR` re-renders any of them (perfkit/render/report.py: REPORTS).
"""
