"""Runbooks: the YAML format, its validation, the expression language and the step-type registry.

Pure code shared by the CLI (validation before start), the interpreter workflow and the activities.
"""
