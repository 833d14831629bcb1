"""One ``/metrics`` for the processes of `kiungo connector|backend --processes N`.

The N processes share one port, so a scrape reaches whichever accepts the connection. Each
process writes its own metrics to ``<directory>/<pid>.prom`` every second (and just before it
answers a scrape); a scrape is answered with all the files merged: counters and histograms
summed, gauges (the same value in every process: read from Postgres or Redis) by their maximum,
``*_created`` timestamps by their minimum; ``kiungo_metrics_processes`` says how many processes
the answer merges. What another process counted in its last second may be missing from one
scrape and is in the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "PROCESSES_METRIC",
    "GroupMetrics",
    "ServedMetrics",
    "merge_metrics",
    "service_registry",
]

log = logging.getLogger("kiungo.runtime.group_metrics")

_PUBLISH_SECONDS = 1.0
# A gauge of the merged answer alone: how many processes it merges.
PROCESSES_METRIC = "kiungo_metrics_processes"


def service_registry() -> CollectorRegistry:
    """A service's registry, with the standard ``process_*`` (CPU, memory, open files, start
    time), ``python_gc_*`` and ``python_info`` collectors a Prometheus user expects. Merged over
    ``--processes N``, the CPU seconds add up and the gauges show the largest process."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class GroupMetrics:
    """This process's metrics, published to ``directory`` and served merged with the other
    processes' found there."""

    def __init__(self, directory: Path, render_own: Callable[[], bytes]) -> None:
        self._directory = directory
        self._render_own = render_own
        self._path = directory / f"{os.getpid()}.prom"
        self._writing = threading.Lock()  # the periodic publish and a scrape's, in two threads

    def publish(self) -> None:
        """Write this process's metrics (whole: written aside, then renamed)."""
        with self._writing:
            aside = self._path.with_suffix(".tmp")
            aside.write_bytes(self._render_own())
            aside.replace(self._path)

    def render(self) -> bytes:
        """Every process's metrics, merged (this one's as of now). Blocking file I/O: call it
        in a thread."""
        self.publish()
        texts = []
        for path in sorted(self._directory.glob("*.prom")):
            with contextlib.suppress(FileNotFoundError):
                texts.append(path.read_text())
        name = PROCESSES_METRIC
        texts.append(
            f"# HELP {name} Processes whose metrics this answer merges\n"
            f"# TYPE {name} gauge\n{name} {len(texts)}\n"
        )
        return merge_metrics(texts)

    async def run(self) -> None:
        """Publish every second until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.publish)
            except OSError as exc:
                log.warning("could not publish this process's metrics: %r", exc)
            await asyncio.sleep(_PUBLISH_SECONDS)


class ServedMetrics:
    """A service's metrics registry, as ``GET /metrics`` serves it: this process's alone, or,
    once :meth:`join` has been called (``--processes N``), every process's merged."""

    registry: CollectorRegistry
    group: GroupMetrics | None = None

    def render(self) -> bytes:
        """This process's metrics."""
        return generate_latest(self.registry)

    def join(self, directory: Path) -> GroupMetrics:
        """Serve the metrics of every process publishing to ``directory``; run the returned
        group's :meth:`GroupMetrics.run` for the others to see this one's."""
        self.group = GroupMetrics(directory, self.render)
        return self.group

    async def scrape(self) -> bytes:
        """What ``GET /metrics`` answers."""
        if self.group is None:
            return self.render()
        try:
            return await asyncio.to_thread(self.group.render)
        except OSError as exc:  # the directory is gone (stopping): this process's alone
            log.warning("could not merge the processes' metrics: %r", exc)
            return self.render()


def merge_metrics(texts: Iterable[str]) -> bytes:
    """Prometheus texts of several processes as one: samples with the same name and labels
    summed (counters, histograms, summaries), or their maximum (gauges), or their minimum
    (``*_created``)."""
    kinds: dict[str, tuple[str, str]] = {}  # family name: (documentation, type)
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            kinds.setdefault(family.name, (family.documentation, family.type))
            merged = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in merged:
                    merged[key] = sample.value
                elif family.type != "gauge":
                    merged[key] += sample.value
                elif family.name.endswith("_created"):
                    merged[key] = min(merged[key], sample.value)
                else:
                    merged[key] = max(merged[key], sample.value)

    class _Merged:
        def collect(self) -> Iterator[Metric]:
            for name, (documentation, kind) in kinds.items():
                family = Metric(name, documentation, kind)
                for (sample_name, labels), value in values[name].items():
                    family.add_sample(sample_name, dict(labels), value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)
