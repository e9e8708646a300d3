"""Folded stacks: parsing, normalising, differencing (folded.py), SVG flamegraphs (svg.py) and the
differential flamegraph report (report.py)."""
