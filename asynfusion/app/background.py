"""Work the handlers run off a request's own thread: the page's sampling, started while its first result
goes out, and the exports and the video, made at a lower CPU priority.

Each keeps the caller's context (contextvars: Gradio's progress and request), as a call in place would.
"""

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

GENTLE_NICE = 10  # Linux: how much nicer than the app the exports and the video run (and what they start)
_MEANWHILE = ThreadPoolExecutor(1, thread_name_prefix="meanwhile")  # one request's work at a time, as the app's


def meanwhile(function: Callable[[], object]) -> Callable[[], object]:
    """Start `function` now, in a thread; a call to the function returned waits for its result (or raises
    its error)."""
    return _MEANWHILE.submit(contextvars.copy_context().run, function).result


def gently(function: Callable, *args, **kwargs):
    """`function(*args, **kwargs)` in a thread of its own at a lower CPU priority (where the OS has per-thread
    priorities: Linux): a browser on the same machine (the app on localhost) starts the 3D player on time
    while the exports and the video are made, and these take the CPU the rest of the time."""
    def niced():
        with contextlib.suppress(OSError, AttributeError):  # relative: an app started under `nice` stays below it
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + GENTLE_NICE, 19))
        return function(*args, **kwargs)

    with ThreadPoolExecutor(1) as once:  # a new thread each time: the priority leaves with it
        return once.submit(contextvars.copy_context().run, niced).result()
