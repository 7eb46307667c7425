"""The one base class of every error that means "your input is wrong".

The command line prints such an error as one line (what is wrong and how to fix it) and exits
with status 2, never with a traceback. Each concrete error also derives from the built-in class
that describes it (``ValueError``, ``KeyError``, ...), so code that catches those still does. A
plugin raises one of these, or its own subclass, for input its user can fix.
"""


class UserError(Exception):
    """Bad input: a matrix, an option, a data file, a model folder, an output folder."""
