"""Every journey with behaviour, and the job that runs their due steps. A new journey adds
its ``Journey`` here (``engine.py`` says what one is)."""

from __future__ import annotations

from services.passes.journeys import cart, feedback, loyalty, price, refill, trial, welcome
from services.passes.journeys.engine import Journey, due_job

JOURNEYS: tuple[Journey, ...] = (
    welcome.JOURNEY,
    cart.JOURNEY,
    price.JOURNEY,
    trial.JOURNEY,
    feedback.JOURNEY,
    refill.JOURNEY,
    loyalty.JOURNEY,
)
JOBS = (due_job(JOURNEYS),)
