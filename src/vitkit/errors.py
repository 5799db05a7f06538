"""The one exception type that means "the user's input is wrong".

The CLI turns a :class:`VitkitError` into one line on stderr and exit code 2; anything else is
a bug and keeps its traceback.
"""


class VitkitError(ValueError):
    """Bad input (path, shape, name, file contents) described in one line."""
