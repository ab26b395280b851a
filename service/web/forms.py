"""Reading HTML forms into the API's own request models, with refusals in words.

Pages build the same pydantic models the API validates (`NewRecord`,
`Application`, ...) from form fields, so the rules on shape live in one place.
`validation_message` turns a pydantic `ValidationError` into one sentence that
names the fields by their labels on the page, and `field_errors` gives each
field's own problem for the form macros. Neither repeats what was typed.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

PROBLEMS = {
    "missing": "is required",
    "string_too_short": "is required",
    "string_too_long": "is too long",
    "string_pattern_mismatch": "is not in the expected form",
    "date_from_datetime_parsing": "is not a date",
    "date_parsing": "is not a date",
    "datetime_parsing": "is not a date and time",
    "datetime_from_date_parsing": "is not a date and time",
    "timezone_aware": "needs a time zone",
    "int_parsing": "is not a whole number",
    "less_than_equal": "is too large",
    "greater_than_equal": "is too small",
    "enum": "is not one of the choices",
    "literal_error": "is not one of the choices",
    "bool_parsing": "must be ticked or not",
}


def _field_of(location: tuple) -> str:
    parts = [str(part) for part in location if not isinstance(part, int)]
    return parts[-1] if parts else ""


def field_errors(error: ValidationError, labels: Mapping[str, str]) -> dict[str, str]:
    """{form field name: "Label is required."} for each field the model refused (first problem only)."""
    found: dict[str, str] = {}
    for problem in error.errors():
        name = _field_of(problem.get("loc", ()))
        label = labels.get(name, name.replace("_", " ").capitalize() or "The form")
        found.setdefault(name, f"{label} {PROBLEMS.get(problem.get('type', ''), 'is not valid')}.")
    return found


def validation_message(error: ValidationError, labels: Mapping[str, str]) -> str:
    """One sentence naming every refused field by its label: "Check these fields: Website, Country."."""
    names = list(field_errors(error, labels))
    shown = [labels.get(name, name.replace("_", " ").capitalize()) for name in names]
    if len(shown) == 1:
        return f"Check this field: {shown[0]}. {field_errors(error, labels)[names[0]]}"
    return f"Check these fields: {', '.join(shown)}."
