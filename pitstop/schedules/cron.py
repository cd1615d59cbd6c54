"""Checking a cron expression before it reaches Temporal: five fields (minute hour day-of-month month
day-of-week) or a macro (`@daily`, `@hourly`, ...), the syntax Temporal's `cron_string` accepts.

`cron_problem(text)` returns a message a human can act on, or None when the expression is valid.
"""

from __future__ import annotations

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

# (name, lowest, highest, names mapped to numbers)
_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),  # 0 and 7 are Sunday
]


def cron_problem(text: str) -> str | None:
    expression = text.strip()
    if not expression:
        return "empty cron expression"
    if expression.startswith("@"):
        return None if expression.lower() in MACROS else f"unknown cron macro {expression!r} (known: {', '.join(MACROS)})"
    if expression.upper().startswith(("CRON_TZ=", "TZ=")):
        return "put the time zone in `time_zone`, not in the cron expression"
    fields = expression.split()
    if len(fields) != 5:
        return (f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
                f"{expression!r} has {len(fields)}")
    for value, (name, low, high, names) in zip(fields, _FIELDS):
        problem = _field_problem(value, low, high, names)
        if problem:
            return f"cron {name} field {value!r}: {problem}"
    return None


def _field_problem(value: str, low: int, high: int, names: dict[str, int]) -> str | None:
    for item in value.split(","):
        base, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            return f"step {step!r} is not a positive number"
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        bounds = [first, last] if dash else [first]
        numbers = []
        for bound in bounds:
            number = names.get(bound.lower()) if bound.lower() in names else (int(bound) if bound.isdigit() else None)
            if number is None:
                return f"{bound!r} is not a number{' or a name' if names else ''}"
            if not low <= number <= high:
                return f"{number} is outside {low}-{high}"
            numbers.append(number)
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return f"range {base!r} runs backwards"
    return None
