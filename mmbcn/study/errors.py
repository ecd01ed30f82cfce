"""The one error a study raises for bad input, before it writes anything."""


class StudyInputError(ValueError):
    """A preset, config or option the study cannot use; the message names it and the fix."""
