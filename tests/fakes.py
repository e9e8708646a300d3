"""Fakes shared by tests: a TrialResult with scripted SPS, and a runner that returns them."""

from perfkit.core.scenario import Scenario, Variant
from perfkit.records.trial import TrialResult


def fake_trial(label: str, sps: float, **learning) -> TrialResult:
    windows = [{"index": i, "agent_steps": 1000, "seconds": 1000 / sps, "phases": {"env": 0.5 / sps * 1000,
                "learn": 0.5 / sps * 1000}, "learning": {}, "sps": sps} for i in range(3)]
    return TrialResult(
        scenario=Scenario.build().to_dict(), label=label, sps=sps, first_window_sps=sps / 10, agent_steps=3000,
        seconds=3000 / sps, epochs=3, phases={"env": 1000 / sps, "learn": 1000 / sps}, windows=windows,
        learning={"heart.get": 0.5, "episodes": 4.0, **learning}, env_config=None, env_config_hash="abc",
        vec={"backend": "serial", "num_workers": 0, "num_envs": 4, "agents_per_env": 24, "agents": 96},
        device="cpu", ppo={},
    )


class FakeRunner:
    """Returns scripted SPS per variant; raises KeyboardInterrupt at call `stop_at`."""

    def __init__(self, sps: dict[str, list[float]], stop_at: int | None = None):
        self.sps, self.stop_at, self.calls = sps, stop_at, []

    def __call__(self, variant: Variant, trial: int, out):
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append((variant.label, trial))
        tr = fake_trial(variant.label, self.sps[variant.label][trial])
        tr.save(out)
        return tr
