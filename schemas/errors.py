"""The one error type for bad input: it always names the file and the field."""

from __future__ import annotations


MAX_MESSAGE_CHARS = 400


def _one_line(message: object) -> str:
    text = " ".join(str(message).split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


class InputError(ValueError):
    """Bad input that a clinician's engineer can fix: which file, which field, what is wrong."""

    def __init__(self, file: str, field: str, message: str):
        self.file = str(file)
        self.field = field
        # Library messages can span lines and quote input; the contract is one short, printable line.
        self.message = _one_line(message)
        super().__init__(f"{self.file}: {field}: {self.message}")

    def __reduce__(self):
        # Picklable, so that it can cross from a worker process to the batch.
        return (type(self), (self.file, self.field, self.message))
