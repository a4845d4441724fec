"""The command line: `python -m asynfusion COMMAND` (or `asynfusion COMMAND`).

    generate AUDIO -o OUT.npz [--sampler ddim|sync-lcm|async-lcm] [--steps-expression N]
             [--steps-gesture N] [--seed N] [--checkpoint PATH] [--video OUT.mp4] [--precision auto|bf16|fp32]
    stream AUDIO -o OUT.npz [--json]  the live path, fed from a file at a microphone's pace: latency p50/p95
    bench AUDIO [--json]            the three samplers on one clip: NFE, seconds, GFLOPs per branch;
                                    interaction variants' cost; rendering fps
    render MOTION.npz [MORE.npz ...] --audio AUDIO -o OUT.mp4 [--body PATH] [--size 512]
    export MOTION.npz -o OUT.glb|OUT.bvh|OUT.csv [--body PATH]
                                    for Blender, Unity/Unreal, three.js: a skinned GLB with ARKit face
                                    shapes, a BVH skeleton, or Live Link Face ARKit curves
    make-corpus OUT_DIR             the built-in speech + motion corpus (BEAT2 layout)
    realism [MOTION.npz ...] --reference CAPTURE.npz --audio SPEECH [--samplers ...] [--baseline MOOD ...]
                                    kinematic and pose statistics against a real capture
    train / distill / fold-guidance / eval
                                    see `python -m asynfusion COMMAND --help`

Bad input ends with one line naming the problem and exit status 2; nothing is written to the
output path on failure. Set ASYNFUSION_DEBUG=1 to see tracebacks of unexpected errors.
"""

import argparse
import sys
from pathlib import Path

from . import settings
from .errors import InputError
from .training.commands import add_training_commands, guidance_table, training_bf16  # noqa: F401 (public)


# ----------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------
def _check_output(path: str, suffix: str) -> Path:
    out = Path(path)
    if out.suffix.lower() != suffix:
        raise InputError(f"output must be a {suffix} file, got {out}")
    if out.is_dir():
        raise InputError(f"output path is a directory: {out}")
    return out


def cmd_generate(args) -> None:
    from .audio import load_audio
    from .motion import save_motion
    from .pipeline import Pipeline
    from .request import Request

    out = _check_output(args.output, ".npz")
    video = _check_output(args.video, ".mp4") if args.video else None
    request = Request(load_audio(args.audio, args.max_seconds), args.sampler, args.steps_expression,
                      args.steps_gesture, args.seed)
    if video:
        from .render import prepare_in_background

        setup = prepare_in_background(args.body, args.size)  # overlaps loading the checkpoint and sampling
    try:
        pipeline = Pipeline(args.checkpoint, args.precision)
        motion, report = pipeline.generate(request, count_flops=False)  # not printed here; `bench` counts them
        s = report.sampling
        stats = None
        if video:  # rendered before the .npz is saved: a failed render leaves neither file
            from .render import render_video

            setup.join()
            stats = render_video([motion], args.audio, video, labels=[motion_label(motion, s.sampler)],
                                 body_path=args.body, size=args.size)
    finally:
        if video:
            from .render import discard_prepared

            setup.join()
            discard_prepared()
    save_motion(out, motion)
    label = "" if report.trained else "  [UNTRAINED checkpoint: random weights, plumbing only]"
    print(f"{out}: {motion.num_frames} frames ({report.audio_seconds:.2f} s) with {s.sampler} "
          f"{s.steps_expression}/{s.steps_gesture}; NFE {s.nfe_expression}+{s.nfe_gesture}, "
          f"generation {report.seconds_total:.2f} s (real-time factor {report.realtime_factor:.3f}) in "
          f"{pipeline.precision}{label}")
    if stats:
        print(f"{video}: {stats['frames']} frames rendered at {stats['fps']:.1f} fps")


def cmd_stream(args) -> None:
    import json

    from .audio import load_audio
    from .live import LiveSession, stream_file
    from .motion import save_motion
    from .pipeline import Pipeline
    from .settings import LiveSettings

    out = _check_output(args.output, ".npz")
    samples = load_audio(args.audio, args.max_seconds)
    pipeline = Pipeline(args.checkpoint, args.precision)
    env = LiveSettings.from_env()  # each option left out: its ASYNFUSION_LIVE_* setting, else the default
    live = LiveSettings(env.chunk_s if args.chunk is None else args.chunk,
                        env.lookahead_s if args.lookahead is None else args.lookahead,
                        env.shown_frames if args.shown is None else args.shown,
                        env.known_frames if args.known is None else args.known)
    session = LiveSession(pipeline, args.sampler, args.steps_expression, args.steps_gesture, args.seed, live=live)
    report = stream_file(session, samples)
    save_motion(out, session.motion())
    if args.json:
        print(json.dumps(report.to_dict()))
        return
    print(f"{out}: {report.frames} frames streamed in {report.windows} windows of {report.sampler} "
          f"{report.steps_expression}/{report.steps_gesture} ({report.chunk_s:.2f} s chunks, "
          f"{report.lookahead_s:.2f} s lookahead, {report.known_frames} of {report.shown_frames} shown frames known, "
          f"{pipeline.precision}); latency p50 {report.latency_p50_s:.2f} s, "
          f"p95 {report.latency_p95_s:.2f} s; {'kept up' if report.kept_up else 'FELL BEHIND'} "
          f"(at worst {report.max_behind_s:.2f} s behind the audio)")


def cmd_bench(args) -> None:
    from .evaluation.bench import run_bench

    run_bench(args)


def motion_label(motion, fallback: str) -> str:
    """'async-lcm 4/8  0.31 s' from a motion's metadata; the file name for motions made elsewhere."""
    meta = motion.metadata
    if "sampler" not in meta:
        return fallback
    steps = f" {meta['steps_expression']}/{meta['steps_gesture']}" if "steps_expression" in meta else ""
    seconds = f"  {meta['seconds_generation']:.2f} s" if "seconds_generation" in meta else ""
    return f"{meta['sampler']}{steps}{seconds}"


def cmd_render(args) -> None:
    from .motion import load_motion
    from .render import render_video

    out = _check_output(args.output, ".mp4")
    motions = [load_motion(path) for path in args.motion]
    labels = [motion_label(m, Path(p).stem) for m, p in zip(motions, args.motion)]
    stats = render_video(motions, args.audio, out, labels=labels, body_path=args.body, size=args.size)
    print(f"{out}: {stats['frames']} frames at {stats['fps']:.1f} fps rendering")


def cmd_export(args) -> None:
    import time

    from .export import export_motion
    from .motion import load_motion

    motion = load_motion(args.motion)
    start = time.perf_counter()
    out = export_motion(motion, args.output, body_path=args.body)
    print(f"{out}: {motion.num_frames} frames ({motion.num_frames / motion.fps:.2f} s), "
          f"{out.stat().st_size / 1e6:.2f} MB in {time.perf_counter() - start:.2f} s")


def cmd_make_corpus(args) -> None:
    from .data.corpus.make import make_corpus

    path = make_corpus(args.out_dir, num_clips=args.clips, seed=args.seed)
    print(f"corpus written to {path}")


def cmd_realism(args) -> None:
    from .evaluation.realism import main as realism_main

    realism_main(args)


def cmd_eval(args) -> None:
    from .evaluation.evaluate import main as evaluate_main

    evaluate_main(args)


# ----------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .diffusion.registry import DEFAULT_SAMPLER, SAMPLERS
    from .settings import PRECISIONS, Settings

    parser = argparse.ArgumentParser(prog="asynfusion", description="AsynFusion: speech -> SMPL-X face and body motion")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def precision_option(p, what: str):
        p.add_argument("--precision", choices=PRECISIONS, default=None,
                       help=f"number format of {what}; default ASYNFUSION_PRECISION, else auto: bf16 on a GPU or "
                            "CPU with bf16 units, fp32 elsewhere")

    def common(p):
        p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the one in checkpoints/)")
        p.add_argument("--max-seconds", type=float, default=None,
                       help="longest audio accepted (default 60, or ASYNFUSION_MAX_SECONDS)")
        precision_option(p, "sampling")

    def sampling_options(p):
        p.add_argument("--sampler", choices=list(SAMPLERS), default=DEFAULT_SAMPLER)
        p.add_argument("--steps-expression", type=int, default=None)
        p.add_argument("--steps-gesture", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)

    p = commands.add_parser("generate", help="speech file -> motion .npz (and optionally an mp4)")
    p.add_argument("audio")
    p.add_argument("-o", "--output", required=True, help="motion .npz to write (BEAT2 layout)")
    sampling_options(p)
    p.add_argument("--video", default=None, help="also render an mp4 with the speech")
    p.add_argument("--body", default=None, help="SMPL-X model .npz (default: ASYNFUSION_BODY or the free stand-in)")
    p.add_argument("--size", type=int, default=Settings.render_size)
    common(p)
    p.set_defaults(run=cmd_generate)

    p = commands.add_parser("stream", help="feed a speech file through the live path in real time; latency")
    p.add_argument("audio")
    p.add_argument("-o", "--output", required=True, help="motion .npz to write (the whole take)")
    sampling_options(p)
    defaults = settings.LiveSettings()  # the help names the defaults the code uses, not a copy of them
    p.add_argument("--chunk", type=float, default=None,
                   help=f"seconds of new motion made at a time (ASYNFUSION_LIVE_CHUNK, {defaults.chunk_s})")
    p.add_argument("--lookahead", type=float, default=None,
                   help="seconds of speech heard after a frame before it is sent "
                        f"(ASYNFUSION_LIVE_LOOKAHEAD, {defaults.lookahead_s})")
    p.add_argument("--shown", type=int, default=None,
                   help="frames already shown that each window starts with "
                        f"(ASYNFUSION_LIVE_SHOWN, {defaults.shown_frames}; 43 fit)")
    p.add_argument("--known", type=int, default=None,
                   help="the newest of them kept as known, the rest sampled anew "
                        f"(ASYNFUSION_LIVE_KNOWN, {defaults.known_frames})")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    common(p)
    p.set_defaults(run=cmd_stream)

    p = commands.add_parser("bench", help="time DDIM, sync LCM and async LCM on one clip")
    p.add_argument("audio")
    p.add_argument("--json", action="store_true", help="print the whole report as one JSON object")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-variants", action="store_true", help="skip the interaction-variant cost rows")
    p.add_argument("--render-seconds", type=float, default=10.0,
                   help="render this much of the clip to time the mesh video (0: skip)")
    p.add_argument("--size", type=int, default=Settings.render_size, help="video size for the rendering row")
    p.add_argument("--body", default=None, help="SMPL-X model .npz for the rendering row")
    common(p)
    p.set_defaults(run=cmd_bench)

    p = commands.add_parser("render", help="motion .npz (one or several, side by side) -> mp4 with the speech")
    p.add_argument("motion", nargs="+")
    p.add_argument("--audio", default=None)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--body", default=None)
    p.add_argument("--size", type=int, default=Settings.render_size)
    p.set_defaults(run=cmd_render)

    p = commands.add_parser("export", help="motion .npz -> .glb (skinned body + animation), .bvh (skeleton) "
                                           "or .csv (ARKit curves, Live Link Face layout)")
    p.add_argument("motion")
    p.add_argument("-o", "--output", required=True, help="OUT.glb, OUT.bvh or OUT.csv: the extension chooses")
    p.add_argument("--body", default=None, help="SMPL-X model .npz (default: ASYNFUSION_BODY or the free stand-in)")
    p.set_defaults(run=cmd_export)

    p = commands.add_parser("make-corpus", help="write the built-in speech + motion corpus (BEAT2 layout)")
    p.add_argument("out_dir")
    p.add_argument("--clips", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_make_corpus)

    add_training_commands(commands, precision_option)

    p = commands.add_parser("eval", help="metrics and the paper's tables on the held-out split")
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--ablation", nargs="*", default=[], help="checkpoints of other interaction variants")
    p.add_argument("--clips", type=int, default=0, help="evaluate on the first N held-out clips (0 = all)")
    p.add_argument("--json", default=None, help="also write the tables as JSON here")
    p.add_argument("--autoencoder", default=None, help="motion autoencoder folder for FMD/FED/FGD "
                   "(default: checkpoints/motion-autoencoder or $ASYNFUSION_AUTOENCODER)")
    p.set_defaults(run=cmd_eval)

    p = commands.add_parser("realism", help="how human the motion looks: kinematic statistics against a capture")
    p.add_argument("motion", nargs="*", help="motion .npz files on the capture's speech")
    p.add_argument("--reference", required=True, help="the real capture (BEAT2 .npz) of the same speech")
    p.add_argument("--audio", default=None, help="the capture's speech (for jaw depth, energy ratio and --samplers)")
    p.add_argument("--samplers", nargs="*", choices=list(SAMPLERS), default=[],
                   help="also generate with these samplers from --audio")
    p.add_argument("--baseline", nargs="*", type=float, default=[], metavar="MOOD",
                   help="also the rule-based generator at these moods (0-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the rows and targets as JSON here")
    common(p)
    p.set_defaults(run=cmd_realism)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last resort: still one line, the traceback on request
        if settings.debug():
            raise
        print(f"error: {type(error).__name__}: {error} (set ASYNFUSION_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The console entry point (`asynfusion`, `python -m asynfusion`): main(), then a quick exit.

    Tearing down an interpreter that has loaded torch and pyrender takes about a second (module
    finalizers, not our work): a tenth of a 10 s clip's end-to-end time. Once the command is done,
    stdio is flushed and the exit handlers run (temporary folders, logging), then the process ends
    without the teardown. With threads still working it exits the usual way instead.
    """
    import atexit
    import os
    import threading

    settings.one_blas_thread()  # before numpy loads
    status = main()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(status)
