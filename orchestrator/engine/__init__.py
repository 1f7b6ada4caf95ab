"""③ + ⑧ The engine: matches events to rules and starts runs; applies task records and advances runs."""

from .loop import Engine

__all__ = ["Engine"]
