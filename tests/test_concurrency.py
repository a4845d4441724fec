"""Several visitors at once: `python app.py` (tiny checkpoint) gets four /generate requests in the same
moment, each with its own clip and seed. Each must get its own motion and video back, and the server's
memory must come back down once they are done.

app.py queues both endpoints under one concurrency id with a limit of 1, so the four requests are
served one after another; what is tested is that none is lost, mixed up or left in memory.
"""

import os
import threading
import time
from pathlib import Path

import pytest
import soundfile

from asynfusion.motion import load_motion

CLIPS = {1.0: 11, 1.5: 12, 2.0: 13, 2.5: 14}  # seconds of speech -> the seed its request asks for
REQUEST_SECONDS = 60   # all four requests, queued behind each other, on two busy cores
SETTLE_SECONDS = 3     # after the last answer: Gradio finishes its bookkeeping, the renderer's threads end
SAMPLE_EVERY = 0.02    # seconds between RSS samples while the requests run
# glibc malloc arenas: the app is started with MALLOC_ARENA_MAX=2. With glibc's default (up to 8 per
# core) every thread that allocates (Gradio's workers, the renderer's skinning thread, ffmpeg pipes) may
# get an arena of its own, and freed memory stays in it: measured on this app (tiny checkpoint, 64 px
# video, 2 cores), RSS after each of ten bursts of four sat +34 to +251 MB above its level after the
# first burst, up and down with no trend, so no leak could be told from it. With 2 arenas the same ten
# bursts stayed within +8 to +39 MB of it (-50 to +19 MB with 1): the drift was the allocator, not the
# app. Python objects that a request left behind (the decoded audio, the motion, the rendered frames,
# a pipeline loaded again) are not freed under any arena setting, so this changes the noise, not what
# is tested.
MALLOC_ARENAS = "2"
# How far the server's RSS may stay above its warmed-up baseline (see the test) once the burst is
# over. Measured with 2 arenas: -58, +7 and -21 MB in three runs of this test, within +-40 MB over ten
# bursts. 100 MB lets that noise pass and fails a leak of 25 MB or more a request (what a request
# handles here is small: a tiny checkpoint, 64 px frames). Smaller leaks hide in the noise: keeping
# each request's OpenGL renderer instead of deleting it (tried on a copy of render.py) adds ~10 MB a
# request, +41 MB over the burst, and passes. A burst that leaves more than the bound is run once more,
# and fails only if it grows the process by the bound again (a leak does; the allocator's noise did not).
LEAK_BOUND_MB = 100


def server_pid(url: str) -> int:
    """The `python app.py` that conftest's running_app started for this URL: a child of this process whose
    environment holds the URL's port (another app started by another test has another port)."""
    port = url.rsplit(":", 1)[1].strip("/")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != os.getpid() or b"app.py" not in (entry / "cmdline").read_bytes():
                continue
            if f"GRADIO_SERVER_PORT={port}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
            continue
    pytest.fail(f"no app.py child of this process serves port {port}")


def status_kb(pid: int, field: str) -> int:
    """A VmRSS / VmHWM line of /proc/PID/status, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+, writing 5 to clear_refs); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakSampler(threading.Thread):
    """Samples VmRSS until stopped; VmHWM (reset at the start) catches what falls between samples."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.samples = pid, 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            self.samples += 1
            self.done.wait(SAMPLE_EVERY)


@pytest.fixture(scope="module")
def app_options():
    """conftest's app_url starts the app with these: small videos, and MALLOC_ARENA_MAX in the app's
    environment only (the tests' own process goes on as before)."""
    return dict(render_size=64, compare_size=64, env={"MALLOC_ARENA_MAX": MALLOC_ARENAS})


def burst(visitors, paths, seeds: dict[float, int], timeout: float) -> tuple[dict, dict]:
    """Submit one /generate per clip at once (each from its own client), then wait for all; returns
    ({seconds: outputs}, {seconds: error text}) so that one failure still shows the others' outcome."""
    from gradio_client import handle_file

    jobs = {seconds: visitors[seconds].submit(handle_file(str(paths[seconds])), "async-lcm", 0, 0, seed, False, 0,
                                              api_name="/generate")
            for seconds, seed in seeds.items()}  # all are queued before the first can be answered
    results, errors = {}, {}
    deadline = time.monotonic() + timeout
    for seconds, job in jobs.items():
        try:
            results[seconds] = job.result(timeout=max(deadline - time.monotonic(), 1))
        except Exception as error:
            errors[seconds] = f"{type(error).__name__}: {error}"
    return results, errors


def test_four_visitors_at_once_each_get_their_own_result_and_memory_comes_back(app_url, tmp_path, speech_like):
    import imageio_ffmpeg
    from gradio_client import Client

    pid = server_pid(app_url)
    paths = {}
    for seconds, seed in CLIPS.items():
        paths[seconds] = tmp_path / f"speech_{seconds:g}s.wav"
        soundfile.write(paths[seconds], speech_like(seconds, seed=seed), 16_000)
    visitors = {seconds: Client(app_url, verbose=False) for seconds in CLIPS}

    # warm-up: the same burst with other seeds. The first requests set up the renderer and torch and
    # grow the process by ~500 MB, once; measured, a single warm-up request left the next burst still
    # 60-110 MB to grow, a whole burst left it within the noise above
    started = time.monotonic()
    _, errors = burst(visitors, paths, dict.fromkeys(CLIPS, 0), REQUEST_SECONDS)
    warm_up = time.monotonic() - started
    assert not errors, errors
    time.sleep(SETTLE_SECONDS)
    baseline_kb = status_kb(pid, "VmRSS")

    peak_reset = reset_peak(pid)
    sampler = PeakSampler(pid)
    sampler.start()
    started = time.monotonic()
    results, errors = burst(visitors, paths, CLIPS, REQUEST_SECONDS)
    seconds_burst = time.monotonic() - started
    sampler.done.set()
    sampler.join(5)
    peak_kb = max(sampler.peak_kb, status_kb(pid, "VmHWM") if peak_reset else 0)
    time.sleep(SETTLE_SECONDS)
    after_kb = status_kb(pid, "VmRSS")
    print(f"\nserver RSS: baseline {baseline_kb / 1024:.0f} MB (after a {warm_up:.1f} s warm-up burst), "
          f"peak {peak_kb / 1024:.0f} MB during the burst ({sampler.samples} samples"
          f"{', VmHWM reset' if peak_reset else ''}), after {after_kb / 1024:.0f} MB "
          f"({(after_kb - baseline_kb) / 1024:+.0f} MB); {len(CLIPS)} requests answered in {seconds_burst:.1f} s")

    assert not errors, errors
    for seconds, (video, motion_path, timings, note) in results.items():
        motion, frames = load_motion(motion_path), round(seconds * 30)
        assert motion.num_frames == frames, (seconds, motion.num_frames)
        assert motion.metadata["seed"] == CLIPS[seconds], (seconds, motion.metadata["seed"])
        assert f"seed {CLIPS[seconds]}, on {seconds:.1f} s of speech" in note, (seconds, note)
        assert dict(timings["data"])["audio length: seconds"] == seconds
        video_frames, video_seconds = imageio_ffmpeg.count_frames_and_secs(video)
        assert video_frames == frames and abs(video_seconds - seconds) < 0.05, (seconds, video_frames, video_seconds)
    videos = [Path(result[0]) for result in results.values()]
    motion_files = [Path(result[1]) for result in results.values()]
    assert len(set(videos)) == len(set(motion_files)) == len(CLIPS)
    assert len({path.read_bytes() for path in videos}) == len({path.read_bytes() for path in motion_files}) == 4

    assert sampler.samples > 10 and peak_kb >= baseline_kb  # memory was watched through the burst
    grown_kb = after_kb - baseline_kb
    if grown_kb >= LEAK_BOUND_MB * 1024:
        # a leak grows with every burst; the allocator once kept +101 MB after a burst (CI, 2026-12-06)
        # and then stays: the same burst again must not grow the process by the bound a second time
        _, errors = burst(visitors, paths, CLIPS, REQUEST_SECONDS)
        assert not errors, errors
        time.sleep(SETTLE_SECONDS)
        grown_kb = min(grown_kb, status_kb(pid, "VmRSS") - after_kb)
    assert grown_kb < LEAK_BOUND_MB * 1024, \
        f"RSS {after_kb / 1024:.0f} MB after the burst, {baseline_kb / 1024:.0f} MB before, and it grew again"
