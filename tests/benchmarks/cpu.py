"""Where a benchmark's CPU goes: CPU time per process group, read from /proc (Linux).

On a machine where the load generator, the servers under test, Postgres and Redis share the
same cores, packets/s alone do not say which of them is the limit. :class:`CpuMeter` reads
each group's CPU seconds (a process and its descendants; every ``postgres`` and
``redis-server`` process on the machine) and the machine's busy and steal time, so a figure
can be given as CPU microseconds per packet for each. Elsewhere (no /proc) it measures
nothing and the figures go without.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CpuMeter"]

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command name, CPU seconds used so far)."""
    table: dict[int, tuple[int, str, float]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ... utime stime ...": comm may hold spaces and parentheses.
        name = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
        fields = stat[stat.rindex(b")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / _TICK)
    return table


def _machine() -> tuple[float, float, float]:
    """Seconds of CPU time since boot: busy (not idle, not waiting for I/O), steal, and all."""
    values = [int(v) for v in (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = values[3], values[4]
    steal = values[7] if len(values) > 7 else 0
    total = sum(values[:8])
    return (total - idle - iowait - steal) / _TICK, steal / _TICK, total / _TICK


class CpuMeter:
    """CPU seconds of named process trees, Postgres, Redis and this process (the load)."""

    def __init__(self) -> None:
        self.available = (_PROC / "stat").exists()
        self._roots: dict[str, int] = {}

    def watch(self, group: str, pid: int) -> None:
        """Count ``pid`` and its descendants as ``group``."""
        self._roots[group] = pid

    def _sample(self) -> dict[str, float]:
        table = _processes()
        children: dict[int, list[int]] = {}
        for pid, (parent, _, _) in table.items():
            children.setdefault(parent, []).append(pid)

        def tree(pid: int) -> float:
            total, stack = 0.0, [pid]
            while stack:
                current = stack.pop()
                if current in table:
                    total += table[current][2]
                stack.extend(children.get(current, ()))
            return total

        sample = {group: tree(pid) for group, pid in self._roots.items()}
        sample["load_generator"] = table.get(os.getpid(), (0, "", 0.0))[2]
        sample["postgres"] = sum(c for _, n, c in table.values() if n.startswith("postgres"))
        sample["redis"] = sum(c for _, n, c in table.values() if n.startswith("redis-server"))
        busy, steal, total = _machine()
        sample["_busy"], sample["_steal"], sample["_total"] = busy, steal, total
        return sample

    async def sample(self) -> dict[str, float]:
        if not self.available:
            return {}
        return await asyncio.to_thread(self._sample)

    @staticmethod
    def per_packet(
        before: Mapping[str, float], after: Mapping[str, float], packets: int
    ) -> dict[str, object]:
        """CPU µs per packet for each group, and the machine's busy and steal share (% of
        all its cores) over the interval."""
        if not before or not after or packets <= 0:
            return {}
        total = after["_total"] - before["_total"]
        figures: dict[str, object] = {
            "cpu_us_per_packet": {
                group: round((after[group] - before.get(group, 0.0)) * 1e6 / packets, 1)
                for group in after
                if not group.startswith("_")
            }
        }
        if total > 0:
            figures["machine_busy_pct"] = round(100 * (after["_busy"] - before["_busy"]) / total)
            figures["machine_steal_pct"] = round(100 * (after["_steal"] - before["_steal"]) / total)
        return figures
