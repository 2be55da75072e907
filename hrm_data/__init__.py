"""hrm-data: HRM's puzzle-dataset format as a library, with builders, a validator and a planner.

Importing this package never imports torch.
"""
__version__ = "0.1.0"

from .format import (  # noqa: F401
    Dataset, DatasetWriter, FormatError, Group, Metadata, Puzzle, fingerprint, open_dataset,
)
