"""The partial state of a for_each split across continue-as-new runs (`CarriedFanOut`): compact index ranges,
outputs and remaining items line up with the original item indexes, and it survives the JSON round trip."""

from __future__ import annotations

from pitstop.runbook.request import CarriedFanOut


def test_ranges_compress_ascending_indexes() -> None:
    assert CarriedFanOut.ranges([]) == []
    assert CarriedFanOut.ranges([0, 1, 2, 5, 7, 8]) == [(0, 2), (5, 5), (7, 8)]


def test_done_and_remaining_indexes_partition_the_items() -> None:
    items = [f"svc-{i}" for i in range(10)]
    done = [0, 1, 2, 3, 6]
    partial = CarriedFanOut(
        step_id="fan", items_total=10, done=CarriedFanOut.ranges(done), outputs=[{"i": i} for i in done],
        remaining=[items[i] for i in range(10) if i not in done],
    )
    again = CarriedFanOut.model_validate_json(partial.model_dump_json())
    assert again == partial
    assert again.done_indexes() == done
    assert again.remaining_indexes() == [4, 5, 7, 8, 9]
    assert dict(zip(again.remaining_indexes(), again.remaining)) == {i: items[i] for i in (4, 5, 7, 8, 9)}
    assert dict(zip(again.done_indexes(), again.outputs)) == {i: {"i": i} for i in done}
