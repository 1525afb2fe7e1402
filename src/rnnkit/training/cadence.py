"""When the trainer logs, when it evaluates, and when a time budget ends training.

Without a time budget the configuration decides alone: a train record every ``log_every``
steps (and at step 1), an evaluation every ``eval_every`` steps or at each epoch's end.

With one (``max_minutes``) a short run must still draw a curve and the budget must hold for the
whole command, the data preparation and baselines before training and the evaluations after it
included (training gets what preparing the data and the baselines left):

1. the steps the budget allows are estimated from the speed so far (steps done / share of the
   budget spent, capped by the planned steps);
2. the train records come at least every 1/50 of that estimate, and evaluations at least every
   1/10 of it, as long as evaluating has taken less than a quarter of the time spent;
3. training stops early enough to leave the final evaluations (validation, then test: twice the
   last validation's duration) inside the budget; what still overruns is cut by their deadline
   (``rnnkit.training.evaluation.evaluate_batches``).

Every number it reads comes from rank 0's clock (:class:`Clock`), so that every process of a
distributed run decides the same.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["Cadence", "Clock"]


class Clock(NamedTuple):
    """Rank 0's seconds: since training began, spent evaluating in training, and the last validation's."""

    elapsed: float = 0.0
    eval_seconds: float = 0.0
    last_eval_seconds: float = 0.0


class Cadence:
    """Decides, step by step, for a ``TrainConfig`` and the planned steps (None: unknown)."""

    LOG_POINTS = 50  # train records over a budgeted run, at least
    EVAL_POINTS = 10  # evaluations over a budgeted run, at least (while they stay cheap)
    EVAL_SHARE = 0.25  # of the time spent, at most, for the evaluations added under a budget
    SETTLE = 0.02  # share of the budget spent before the speed is trusted for added evaluations

    def __init__(self, config, planned_steps: int | None, spent: float = 0.0) -> None:
        """``spent``: seconds of ``max_minutes`` the command used before training (reading the
        data, the baselines); training and its final evaluations get the rest (at least 1 s, or
        the whole budget when it is shorter: a command that spent it all still trains a step)."""
        self.log_every, self.eval_every = config.log_every, config.eval_every
        self.planned = planned_steps
        budget = config.max_minutes * 60.0
        self.budget_s = max(budget - spent, min(budget, 1.0)) if config.max_minutes else 0.0
        self.clock = Clock()
        self.last_log = 0

    def tick(self, clock: Clock) -> None:
        """The time as it stands after a step (rank 0's)."""
        self.clock = clock

    @property
    def budget_used(self) -> float:
        """Share of the time budget spent (0 without a budget)."""
        return self.clock.elapsed / self.budget_s if self.budget_s else 0.0

    @property
    def seconds_left(self) -> float | None:
        """Seconds of the budget left (None without a budget)."""
        return max(0.0, self.budget_s - self.clock.elapsed) if self.budget_s else None

    def expected_steps(self, step: int) -> int | None:
        """The steps this run will train: the planned ones, or fewer where the budget ends it first."""
        if not self.budget_s or self.budget_used <= 0 or step < 1:
            return self.planned
        guess = max(step, int(step / self.budget_used))
        return min(guess, self.planned) if self.planned else guess

    def log_due(self, step: int) -> bool:
        if step == 1:
            return True
        if not self.budget_s:
            return step % self.log_every == 0
        interval = min(self.log_every, max(1, (self.expected_steps(step) or 0) // self.LOG_POINTS))
        return step - self.last_log >= interval

    def logged(self, step: int) -> None:
        self.last_log = step

    def eval_due(self, step: int, last_eval_step: int) -> bool:
        """An evaluation at this step: ``eval_every``'s, or one added under a budget (epoch ends aside)."""
        if self.eval_every and step % self.eval_every == 0:
            return True
        c = self.clock
        if not self.budget_s or self.budget_used < self.SETTLE or c.eval_seconds > self.EVAL_SHARE * c.elapsed:
            return False
        interval = max(1, (self.expected_steps(step) or 0) // self.EVAL_POINTS)
        return step - max(last_eval_step, 0) >= interval

    def budget_spent(self) -> bool:
        """Stop training: the budget is spent, the time the final evaluations need aside."""
        if not self.budget_s:
            return False
        return self.clock.elapsed + 2 * self.clock.last_eval_seconds > self.budget_s
