"""The Chaos Toolkit side of pitstop: `runner.py` runs one phase of an experiment with chaoslib in a child process
(docs/chaos.md); experiments and custom probes/actions live beside it."""
