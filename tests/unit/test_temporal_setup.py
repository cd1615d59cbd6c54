"""What a namespace lacks for pitstop (pure): missing search attributes, ones of the wrong kind, the message."""

from __future__ import annotations

from pitstop.workers.devserver import SEARCH_ATTRIBUTES
from pitstop.workers.temporal_setup import cloud_hint, not_ready_message, search_attribute_gap


def test_a_namespace_with_every_attribute_is_ready_whatever_else_it_has() -> None:
    registered = {**SEARCH_ATTRIBUTES, "CustomerId": "Keyword", "Priority": "Int"}
    assert search_attribute_gap(SEARCH_ATTRIBUTES, registered).ready


def test_a_bare_namespace_lacks_all_six() -> None:
    gap = search_attribute_gap(SEARCH_ATTRIBUTES, {})
    assert not gap.ready
    assert gap.missing == SEARCH_ATTRIBUTES
    assert set(gap.missing) == {"RunbookName", "TargetService", "TargetNamespace", "TargetRegion", "Trigger", "Phase"}


def test_some_missing_and_one_of_another_kind() -> None:
    registered = {"RunbookName": "Keyword", "TargetService": "Text", "Phase": "Keyword"}
    gap = search_attribute_gap(SEARCH_ATTRIBUTES, registered)
    assert gap.missing == {"TargetNamespace": "Keyword", "TargetRegion": "Keyword", "Trigger": "Keyword"}
    assert gap.wrong_kind == {"TargetService": ("Keyword", "Text")}


def test_the_message_names_namespace_address_attributes_and_the_command() -> None:
    gap = search_attribute_gap(SEARCH_ATTRIBUTES, {"RunbookName": "Keyword", "Phase": "Text"})
    text = not_ready_message(gap, namespace="ops", address="temporal.internal:7233")
    assert "'ops'" in text and "temporal.internal:7233" in text
    assert "TargetService, TargetNamespace, TargetRegion, Trigger" in text
    assert "`pitstop setup`" in text and "BadSearchAttributes" in text
    assert "PITSTOP_TEMPORAL__REGISTER_SEARCH_ATTRIBUTES=true" in text
    assert "'Phase'" in text and "registered as Text but pitstop needs Keyword" in text
    assert "RunbookName" not in text.split("Search attribute 'Phase'")[0]  # present ones are not listed as missing


def test_the_cloud_hint_is_a_tcld_command_for_exactly_the_missing_ones() -> None:
    hint = cloud_hint("ops", {"Trigger": "Keyword", "Phase": "Keyword"})
    assert hint == ("tcld namespace search-attributes add --namespace ops.<account> "
                    "--search-attribute 'Trigger=Keyword' --search-attribute 'Phase=Keyword'")
