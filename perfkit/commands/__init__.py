"""One module per command; each composes the engine and returns a record.

  explain.py      why B is slower: paired per-function and per-phase differences
  gate.py         the CI gate: checks, rounds of rollouts, verdicts against thresholds
  bisection/      which commit: a sequential search over a repository's history
  profiling.py    py-spy, torch.profiler and Scalene on one trial per variant
  diagnose.py     is the training signal there at all
  flamegraphs.py  a compare's py-spy flamegraphs and their differences
"""
