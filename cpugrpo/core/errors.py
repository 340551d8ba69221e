"""The one base class of errors a user can fix. The CLI turns any of them into one line on stderr and exit code 2.

Every library error that means "your input is wrong" subclasses ``CpugrpoError`` and says how to fix it in its
first line ("per-step batch 20 is not divisible by num_generations 8: use 16 or 24").
"""


class CpugrpoError(Exception):
    """Bad input the user can fix; the message's first line names the fix."""


class ConfigError(CpugrpoError, ValueError):
    """Bad configuration (a training config, a sweep spec, a command's options)."""
