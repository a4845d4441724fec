"""The streamed motion of the shipped checkpoint moves like its offline motion on the same speech (issue #22),
measured by tools/stream_check.py, fed faster than real time (the same motion, tested in test_live.py)."""

import importlib.util

import numpy as np
import pytest
import soundfile

from asynfusion.settings import LiveSettings

# The geometric mean of the streamed/offline upper-body speed and wrist p95 ratios, averaged over seeds 0
# and 1, on the three shipped examples joined (15.5 s, fp32). With every shown frame known (v6, the
# settings before), the streamed motion was damped: 0.77 and 0.73 (0.75); with the newest 12 known,
# 0.99 and 0.92 (0.96). On the minute of real speech the same change took the speed ratio from
# 0.71-0.74 to 0.96-1.05. Checkpoint v8 streams with the newest 6 known (settings.LiveSettings): with 8,
# 0.80 and 0.85 (0.82); with 6, 0.93; with 4, 1.00.
DAMPED_BELOW = 0.85
BOUNDARY_LIMIT = 1.5  # the issue's: the largest step into a piece <= 1.5x the 99th percentile elsewhere


@pytest.fixture(scope="module")
def stream_check(repo_root):
    spec = importlib.util.spec_from_file_location("stream_check", repo_root / "tools" / "stream_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_streamed_motion_is_not_damped(stream_check, repo_root, tmp_path):
    parts = [soundfile.read(path, dtype="float32")[0] for path in sorted((repo_root / "assets" / "examples")
                                                                         .glob("*.wav"))]
    speech = tmp_path / "examples.wav"
    soundfile.write(speech, np.concatenate(parts), 16_000)
    ratios = []
    for seed in (0, 1):
        result = stream_check.check(str(speech), None, "fp32", seed, LiveSettings(), realtime=False)
        ratios.append(np.sqrt(result["speed_ratio"] * result["wrist_p95_ratio"]))
        assert result["boundary_ratio"] <= BOUNDARY_LIMIT, result
        assert result["lip_sync_ratio"] >= 0.8, result
    assert np.mean(ratios) >= DAMPED_BELOW, ratios
