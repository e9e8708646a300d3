"""The ground layer: what every other layer may use, and which imports nothing of perfkit above it.

  stats.py     intervals, verdicts, block comparisons, the precision rule
  timing.py    steady-state windows and phase timers
  markers.py   the frame names that split one process's samples by variant and round
  sentinel.py  how much of the machine other processes took during a block
  threads.py   torch's thread policy
  scenario.py  axes, values, `Variant` and the one slug rule
  folded.py    folded stacks: parse, normalise, difference
  files.py     atomic writes
  machine.py   what machine a result was measured on
  children.py  child processes: run in their own group, forward a stop, describe an exit
"""
