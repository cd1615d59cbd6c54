"""The fuzzers' hypothesis profile (tests/fuzz/profiles.py)."""

from tests.fuzz import profiles

profiles.load()
