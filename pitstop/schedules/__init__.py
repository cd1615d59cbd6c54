"""Temporal Schedules declared in a reviewed file (`runbooks/schedules.yaml`): the file's format and validation
(`model`, `validation`, `cron`), the pure reconcile decision (`reconcile`) and the rule for a scheduled run that
finds its target busy (`skips`). The Temporal I/O lives in `workers/schedules.py`.
"""
