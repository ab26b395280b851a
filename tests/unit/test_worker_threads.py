"""A worker process runs one thread per native library, and loads OpenCV only for the models that need it."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from service.worker.runtime import limit_native_threads
limit_native_threads()
print("cv2 loaded:", "cv2" in sys.modules)
import cv2
print("opencv threads:", cv2.getNumThreads())
"""


def test_a_worker_limits_opencv_to_one_thread_without_importing_it():
    environment = {"PATH": "/usr/bin:/bin"}  # none of the thread variables inherited from this run
    shown = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=environment, check=True, timeout=120
    ).stdout.splitlines()
    assert shown == ["cv2 loaded: False", "opencv threads: 1"]
