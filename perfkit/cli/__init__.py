"""The command line (Click only): parse, call a command, render its record.

  main.py             the `perfkit` group, compare, run, variants, report
  options.py          shared options, value types and checks of what was asked
  explain_command.py  `perfkit explain`
  bisect_command.py   `perfkit bisect`
  tools.py            profile, diagnose, gate
"""
