"""The durable undo record (`pitstop.undo_values`): what a retried step finds, first write wins, bounds."""

from __future__ import annotations

import json

from pitstop.undo_values import (
    MAX_CHARS,
    MAX_ENTRIES,
    UNDO_VALUES_ANNOTATION,
    decode,
    entry_key,
    recorded_previous,
    with_previous,
)


def annotated(text: str) -> dict[str, str]:
    return {"other": "kept", UNDO_VALUES_ANNOTATION: text}


def test_a_retry_finds_the_value_its_first_attempt_recorded() -> None:
    text = with_previous({}, "run-1/scale@r1", 2)
    found = recorded_previous(annotated(text), "run-1/scale@r1", int)
    assert found is not None and found.value == 2
    assert recorded_previous(annotated(text), "run-1/scale@r2", int) is None, "another execution's key"
    assert recorded_previous(annotated(text), "run-1/other@r1", int) is None
    assert recorded_previous({}, "run-1/scale@r1", int) is None and recorded_previous(None, "run-1/scale@r1", int) is None


def test_values_keep_their_type_and_a_wrong_type_counts_as_absent() -> None:
    weights = with_previous({}, "k", {"stable": 90, "canary": 10})
    found = recorded_previous(annotated(weights), "k", dict[str, int])
    assert found is not None and found.value == {"stable": 90, "canary": 10}
    assert recorded_previous(annotated(weights), "k", int) is None
    image = with_previous({}, "k", "registry.example/app:1.0")
    assert recorded_previous(annotated(image), "k", int) is None
    flag = with_previous({}, "k", True)
    assert recorded_previous(annotated(flag), "k", int) is None, "a bool is not a replica count"
    empty = with_previous({}, "k", {})
    found_empty = recorded_previous(annotated(empty), "k", dict[str, int])
    assert found_empty is not None and found_empty.value == {}, "an empty previous value is still a recorded one"


def test_the_first_recorded_value_wins() -> None:
    first = with_previous({}, "k", 2)
    second = with_previous(annotated(first), "k", 4)
    found = recorded_previous(annotated(second), "k", int)
    assert found is not None and found.value == 2


def test_unreadable_records_are_empty_and_get_replaced() -> None:
    for text in ("", "not json", "[1, 2]", '"a string"'):
        assert decode(text) == {}
        assert recorded_previous(annotated(text), "k", int) is None
        assert decode(with_previous(annotated(text), "k", 3)) == {entry_key("k"): 3}


def test_keys_are_digests_of_bounded_length() -> None:
    long_key = "run-" + "x" * 5000 + "/scale@run"
    record = decode(with_previous({}, long_key, 1))
    assert list(record) == [entry_key(long_key)] and len(entry_key(long_key)) == 24
    assert entry_key("a") != entry_key("b") and entry_key("a") == entry_key("a")


def test_only_the_newest_entries_are_kept() -> None:
    annotations: dict[str, str] = {}
    for n in range(MAX_ENTRIES + 5):
        annotations = annotated(with_previous(annotations, f"step-{n}", n))
    record = decode(annotations[UNDO_VALUES_ANNOTATION])
    assert list(record.values()) == list(range(5, MAX_ENTRIES + 5)), "oldest first, the newest MAX_ENTRIES"
    newest = recorded_previous(annotations, f"step-{MAX_ENTRIES + 4}", int)
    assert newest is not None and newest.value == MAX_ENTRIES + 4
    assert recorded_previous(annotations, "step-0", int) is None


def test_the_text_stays_under_its_size_bound_and_keeps_the_new_entry() -> None:
    annotations: dict[str, str] = {}
    big = "i" * 2000
    for n in range(10):
        annotations = annotated(with_previous(annotations, f"step-{n}", f"{big}-{n}"))
        assert len(annotations[UNDO_VALUES_ANNOTATION]) <= MAX_CHARS
    record = json.loads(annotations[UNDO_VALUES_ANNOTATION])
    assert list(record.values())[-1] == f"{big}-9"
    assert 1 < len(record) < 10
    huge = "h" * (MAX_CHARS * 2)
    alone = decode(with_previous(annotations, "huge", huge))
    assert list(alone.values()) == [huge], "a value larger than the bound is still recorded, alone"
