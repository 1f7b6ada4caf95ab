"""① File watches: the model and path confinement (config.py), what changed and its events (changes.py), and
the watcher (watcher.py) that announces changes as file.added / file.modified / file.deleted events, also
those made while nobody watched."""

from .config import SECTION, WatchConfig
from .watcher import FileWatcher

__all__ = ["SECTION", "FileWatcher", "WatchConfig"]
