"""The README's side-by-side still: a real capture and motion generated from its speech, on the free body.

    python tools/realism_still.py ../shared/real/2_scott_0_2_2.npz ../shared/real/2_scott_0_2_2.wav docs/realism.png
           [--sampler async-lcm] [--seconds 8 20 32 44] [--size 320]

Top row: the capture at the given moments; bottom row: the shipped checkpoint's motion for the same
speech (seed 0) at the same moments. Both are rendered on the free stand-in body, so what differs is
the motion. The capture itself is never copied into the repository: only this picture of it.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asynfusion.audio import load_audio  # noqa: E402
from asynfusion.motion import FPS, load_motion  # noqa: E402
from asynfusion.pipeline import Pipeline  # noqa: E402
from asynfusion.render import render_still  # noqa: E402
from asynfusion.request import Request  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("audio")
    parser.add_argument("out")
    parser.add_argument("--sampler", default="async-lcm")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--seconds", type=float, nargs="+", default=[8.0, 20.0, 32.0, 44.0])
    parser.add_argument("--size", type=int, default=320)
    args = parser.parse_args()

    capture = load_motion(args.capture)
    samples = load_audio(args.audio, max_seconds=capture.num_frames / FPS + 5)
    generated, _ = Pipeline(args.checkpoint).generate(Request(samples, args.sampler, seed=0), count_flops=False)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, motion in (("capture", capture), (f"{args.sampler}, seed 0", generated)):
            tiles = []
            for seconds in args.seconds:
                frame = min(round(seconds * FPS), motion.num_frames - 1)
                path = render_still(motion, frame, Path(folder) / f"{len(rows)}-{frame}.png", size=args.size,
                                    label=f"{name}, {seconds:g} s")
                tiles.append(np.asarray(Image.open(path).convert("RGB")))
            rows.append(np.concatenate(tiles, axis=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, optimize=True)
    print(f"{args.out}: capture (top) and {args.sampler} (bottom) at {', '.join(f'{s:g}' for s in args.seconds)} s")


if __name__ == "__main__":
    main()
