"""How many jobs a sweep launches, and the progress line printed after each one."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from dlas.store.results import STATUSES


def sweep_jobs(params: Mapping[str, object] | None, arguments: Sequence[str] = (),
               max_batch_size: int | None = None, config_loader=None) -> list[list[str]]:
    """The override lists of the jobs Hydra's BasicSweeper launches for `hydra.sweeper.params`
    plus command-line `arguments` (an argument replaces the params' axis of the same key).

    Uses the sweeper's own parser and expansion so the count cannot drift from what runs;
    `config_loader` is needed only to expand glob() over config group options."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    overrides = OverridesParser.create(config_loader=config_loader).parse_overrides(lines)
    batches = BasicSweeper.split_arguments(overrides, max_batch_size)
    return [job for batch in batches for job in batch]


def duration(seconds: float) -> str:
    """10m03s, 1h02m, 45s: the width of a progress line stays readable at any scale."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Counts of finished jobs by status, and an ETA from the jobs that computed something.

    Reused jobs (a point already measured) take a second, so they count as done but do not
    enter the mean; the remaining jobs are assumed to compute (an upper bound on a resume)."""

    def __init__(self, total: int | None):
        self.total = total
        self.counts: Counter[str] = Counter()
        self.reused = 0
        self.computed_s: list[float] = []

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def add(self, status: str, seconds: float, reused: bool = False):
        self.counts[status] += 1
        if reused:
            self.reused += 1
        else:
            self.computed_s.append(seconds)

    def eta_s(self) -> float | None:
        if self.total is None or not self.computed_s:
            return None
        remaining = max(self.total - self.done, 0)
        return remaining * sum(self.computed_s) / len(self.computed_s)

    def line(self, elapsed_s: float) -> str:
        total = "?" if self.total is None else self.total
        ok = f"ok {self.counts['ok']}" + (f" ({self.reused} reused)" if self.reused else "")
        others = [f"{s} {self.counts[s]}" for s in STATUSES if s != "ok"]
        eta = self.eta_s()
        return " · ".join([f"[{self.done}/{total}] {ok}", *others, f"elapsed {duration(elapsed_s)}",
                           f"ETA {duration(eta) if eta is not None else '-'}"])
