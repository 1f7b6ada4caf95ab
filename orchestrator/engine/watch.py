"""③ Watching a project's rules/ and workflows/ for changes (watchfiles), for the engine's reload.

A burst of file events (an editor's save, a `git pull`) is one change once the folders have been quiet
for `engine_reload_debounce_s`; only `.yaml`, `.yml` and `.py` files under rules/ and workflows/ count,
so the project's `.orch/` state (an embedded Redis's data) never triggers a reload. It watches the project
root, so rules/ or workflows/ deleted and made again (a `git checkout`, a directory swap) are still seen;
and should the watcher miss something or stop, the engine's check compares the files' fingerprint
(project_files.py) every `engine_reload_check_s` as well. The watcher only
says that something changed: the engine's own thread loads the project (engine/reload.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..project import RULES_DIR, WORKFLOWS_DIR
from ..settings import Settings

__all__ = ["watch_project_files"]

log = logging.getLogger(__name__)


def watch_project_files(root: Path, settings: Settings, stop: threading.Event,
                        changed: Callable[[], None]) -> threading.Thread:
    """Call `changed` after each burst of changes to the project at `root`, in a daemon thread, until `stop`."""
    thread = threading.Thread(target=_watch, args=(root, settings, stop, changed), name="orch-project-watch",
                              daemon=True)
    thread.start()
    return thread


def _watch(root: Path, settings: Settings, stop: threading.Event, changed: Callable[[], None]) -> None:
    import watchfiles

    folders = [root / RULES_DIR, root / WORKFLOWS_DIR]

    def wanted(_change: Any, path: str) -> bool:
        return path.endswith((".yaml", ".yml", ".py")) and any(Path(path).is_relative_to(f) for f in folders)

    quiet_ms = int(settings.engine_reload_debounce_s * 1000)
    log.info("engine: watching %s for rule and workflow changes", ", ".join(map(str, folders)))
    try:  # the root, not the folders: a folder deleted and made again (git checkout, a swap) stays watched
        for _ in watchfiles.watch(root, watch_filter=wanted, step=quiet_ms, debounce=max(10 * quiet_ms, 1600),
                                  stop_event=stop, raise_interrupt=False):
            changed()
    except Exception:  # noqa: BLE001 - e.g. out of inotify watches: the engine runs on, without watching
        log.exception("engine: the project watcher stopped; the engine's check still compares the files' "
                      "sizes and times every engine_reload_check_s, and `orch reload` publishes")
