"""① File watches: the model and path confinement (config.py) and the watcher (watcher.py) that turns
changes into file.added / file.modified / file.deleted events, also those made while nobody watched."""

from .config import SECTION, WatchConfig
from .watcher import FileWatcher

__all__ = ["SECTION", "FileWatcher", "WatchConfig"]
