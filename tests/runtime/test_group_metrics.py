"""Metrics of the processes of `--processes N`, merged into one answer."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kiungo.connector.metrics import Metrics
from kiungo.runtime.group_metrics import GroupMetrics, merge_metrics


def _process(packets: int, seconds: list[float], owed: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("kiungo_ilp_packets", "packets", ["outcome"], registry=registry)
    counter.labels("fulfilled").inc(packets)
    counter.labels("T04").inc(1)
    histogram = Histogram("kiungo_ilp_packet_seconds", "s", buckets=(0.01, 1), registry=registry)
    for value in seconds:
        histogram.observe(value)
    Gauge("kiungo_posts_owed", "owed", registry=registry).set(owed)
    return registry


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_counters_and_histograms_are_summed_gauges_are_the_maximum() -> None:
    one, two = _process(3, [0.005], 7), _process(5, [0.5, 2], 7)
    merged = _samples(merge_metrics([generate_latest(one).decode(), generate_latest(two).decode()]))
    assert merged[("kiungo_ilp_packets_total", (("outcome", "fulfilled"),))] == 8
    assert merged[("kiungo_ilp_packets_total", (("outcome", "T04"),))] == 2
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in merged.items()
        if name == "kiungo_ilp_packet_seconds_bucket"
    }
    assert buckets == {"0.01": 1, "1.0": 2, "+Inf": 3}
    assert merged[("kiungo_ilp_packet_seconds_count", ())] == 3
    assert merged[("kiungo_ilp_packet_seconds_sum", ())] == 2.505
    assert merged[("kiungo_posts_owed", ())] == 7  # the same Redis list seen by both
    created = [
        _samples(generate_latest(registry))[("kiungo_ilp_packets_created", (("outcome", "T04"),))]
        for registry in (one, two)
    ]
    assert merged[("kiungo_ilp_packets_created", (("outcome", "T04"),))] == min(created)


def test_a_group_serves_every_published_process_and_says_how_many(tmp_path: Path) -> None:
    first, second = _process(3, [], 0), _process(4, [], 0)
    (tmp_path / "1.prom").write_bytes(generate_latest(first))  # another process's
    group = GroupMetrics(tmp_path, lambda: generate_latest(second))
    merged = _samples(group.render())
    assert merged[("kiungo_ilp_packets_total", (("outcome", "fulfilled"),))] == 7
    assert merged[("kiungo_metrics_processes", ())] == 2
    assert len(list(tmp_path.glob("*.prom"))) == 2  # this one's published too
    assert not list(tmp_path.glob("*.tmp"))


async def test_a_scrape_once_the_directory_is_gone_answers_for_this_process(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    metrics.packets.labels("fulfilled", "local").inc(3)
    metrics.join(tmp_path / "gone")  # never created: as after the parent removed it
    merged = _samples(await metrics.scrape())
    key = ("kiungo_ilp_packets_total", (("outcome", "fulfilled"), ("peer", "local")))
    assert merged[key] == 3
    assert ("kiungo_metrics_processes", ()) not in merged
