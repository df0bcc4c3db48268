"""Reading the daemon's ``/metrics`` text with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_total(text: str, name: str, default: float | None = None, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``; fails if there is none
    (unless a ``default`` is given)."""
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    if not values and default is not None:
        return default
    assert values, f"{name}{labels or ''} not exposed"
    return sum(values)
