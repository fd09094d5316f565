"""Reading and writing image stacks, atom tables and projects."""

from atomlens.io.readers import SUPPORTED_SUFFIXES, read_stack
from atomlens.io.stack import Stack, StackError, as_stack_array
from atomlens.io.writers import write_tiff

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Stack",
    "StackError",
    "as_stack_array",
    "read_stack",
    "write_tiff",
]
