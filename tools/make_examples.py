"""Write the app's example clips to assets/examples/: three short espeak-ng speeches in different voices.

    python tools/make_examples.py [OUT_DIR]

Each clip is two or three sentences (not from the training corpus's sentence generator) with short
pauses, 16 kHz mono PCM16 WAV, 3-8 s long. Rerunning gives the same files for the same espeak-ng.
"""

import sys
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asynfusion.audio import SAMPLE_RATE  # noqa: E402
from asynfusion.data.corpus.speech import Voice, assemble, synthesize  # noqa: E402

# name -> (voice, words per minute, pitch 0-99, sentences)
EXAMPLES = {
    "hello_en-us_m3": (Voice("en-us", "m3"), 165, 45, [
        "Hello there!", "Let me show you how a voice turns into gestures and a face."]),
    "weather_en-gb_f3": (Voice("en-gb-x-rp", "f3"), 160, 60, [
        "The weather was lovely this morning.", "So we walked all the way down to the harbour."]),
    "idea_en-us_andy": (Voice("en-us", "Andy"), 175, 40, [
        "Honestly, I think this is a great idea.", "But we should test it first, right?"]),
}
PAUSE_SECONDS, LEAD_SECONDS, TAIL_SECONDS = 0.35, 0.25, 0.3


def make_examples(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (voice, rate, pitch, sentences) in EXAMPLES.items():
        phrases = [synthesize(text, voice, rate, pitch, amplitude=100) for text in sentences]
        samples = assemble(phrases, [PAUSE_SECONDS] * len(phrases), LEAD_SECONDS, TAIL_SECONDS)
        samples = samples / max(float(np.abs(samples).max()), 1e-6) * 10 ** (-3 / 20)  # peak at -3 dBFS
        seconds = len(samples) / SAMPLE_RATE
        if not 3.0 <= seconds <= 8.0:
            raise SystemExit(f"{name}: {seconds:.1f} s, outside the 3-8 s an example should last")
        path = out_dir / f"{name}.wav"
        soundfile.write(path, samples.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        print(f"{path}: {seconds:.2f} s, voice {voice.espeak_name}")
        paths.append(path)
    return paths


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1] / "assets" / "examples"
    make_examples(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
