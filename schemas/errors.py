"""The one error type for bad input: it always names the file and the field."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input that a clinician's engineer can fix: which file, which field, what is wrong."""

    def __init__(self, file: str, field: str, message: str):
        self.file = str(file)
        self.field = field
        # Library messages can span lines; the contract is one line per error.
        self.message = " ".join(str(message).split())
        super().__init__(f"{self.file}: {field}: {self.message}")

    def __reduce__(self):
        # Picklable, so that it can cross from a worker process to the batch.
        return (type(self), (self.file, self.field, self.message))
