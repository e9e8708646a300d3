"""`perfkit bisect`: the commit that moved SPS (or a learning metric) in a user's repository.

Each tested commit is checked out into its own `git worktree` under the run directory (the user's
working tree and index are never touched; the worktrees are removed at the end, also on Ctrl-C).
One process (`perfkit.engine.bisect_trainer`) imports each commit's env from its worktree, in isolation, and
holds a trainer per commit: for every step, fresh trainers of the good end, the commit under test
and the bad end take turns, a block of training each per round, in rotating order. Sharing one
process matters: two processes of the very same code can differ by a few per cent for their whole
life, more than the 5% regression a bisection must place.

Levels. Per round r the metric (log SPS, or the learning value) of good, mid and bad is g, m, b.
The regression D = b - g is measured first between the ends alone (if it is not beyond noise,
there is nothing to bisect), then pooled over every round of the run, as is the noise of one
block. A commit's level is (m - g) / D: 0 is good's level, 1 is bad's. The step's question is
which end it is closer to, asked by Wald's sequential probability ratio test of level 0 against
level 1 on z = m - g - D/2 per round (paired within the round): a round at a time, each wrong
answer about 0.5% likely however many rounds it takes ("cannot tell yet" adds a round), up to the
step's budget. A commit that cannot tell even then, or whose env fails to build, is left out (as
`git bisect skip`) and a neighbour is tested instead.

Non-monotonic histories. A bad-like commit whose level is estimated above 1 is also tested, the
same way, for level 2 against level 1: one at level 2 (say commit k costs 10% and k+10 gives half
of it back) means the regression is not one step. The search then also looks for the second
change point, between that commit and the bad end, and reports both. A commit clearly better
than the good end is reported as inconsistent evidence, with the commits involved, never as a
certain culprit.

Modules (only driver.py imports the others):
  git.py        the commits to bisect, a worktree per commit, running git (BisectError)
  signals.py    Ctrl-C and SIGTERM as one request to stop (Interrupts)
  trainers.py   the client of the trainer process: start it, ask it, CommitBroken; and the same
                protocol for a user's own command (CommandTrainers, `bisect --cmd`)
  evidence.py   paired rounds, the regression and its noise, the sequential test, verdicts
  search.py     the search over commit indices from verdicts, and the outcome they support
  driver.py     runs it all: trainers, rounds, phases, the record saved, the cleanup
"""

from perfkit.commands.bisection.driver import Bisect, BisectOptions
from perfkit.commands.bisection.git import BisectError, commit_range
from perfkit.commands.bisection.signals import Interrupts
from perfkit.commands.bisection.trainers import CommandTrainers

__all__ = ["Bisect", "BisectError", "BisectOptions", "CommandTrainers", "Interrupts", "commit_range"]
