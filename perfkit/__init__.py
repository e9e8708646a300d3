"""perfkit: tells RL engineers why their training got slower or stopped learning.

Importing this package has no side effects: no threads, no signal handlers, no warning filters.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
