"""Kubernetes resource quantities ("250m", "512Mi", "1.5", "2Gi", "1e3") as floats in base units (cores, bytes)."""

from __future__ import annotations

_SUFFIXES: dict[str, float] = {
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}


def parse_quantity(value: str | int | float | None) -> float:
    """A quantity in base units; None is 0. An unparsable value raises ValueError naming it."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            try:
                return float(number) * _SUFFIXES[suffix]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 250m, 1.5, 512Mi, 2Gi)") from None
