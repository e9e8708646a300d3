"""The engine: what runs in a trial and how rounds of trials are driven.

  rounds.py          rotation and the stop rule (rounds, precision, time): one place for every command
  trial.py           one trial of the built-in trainer in its own process (`python -m perfkit.engine.trial`)
  session.py         several variants' trainers in ONE process, an epoch each per round
  local.py           the local backends: fresh processes per trial, or one session process
  cluster.py         the Ray backend: rounds on a cluster's nodes
  bisect_trainer.py  bisect's trainer server: one commit's trainer, driven an epoch at a time
  gpu.py             reading a trial's GPU trace (torch.profiler, Holistic Trace Analysis)
  profilers/         py-spy, torch.profiler and Scalene around a trial
"""
