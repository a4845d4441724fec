"""The command line's training commands: train, distill and fold-guidance (cli.py adds them to its parser)."""

from .. import settings
from ..errors import InputError


def cmd_train(args) -> None:
    from ..config import ModelConfig
    from ..data.beat2 import expression_space
    from .train import TrainConfig, train

    space = expression_space(args.data)
    model_config = ModelConfig(expression_space=space, continuation=args.continuation, pooled_audio=args.pooled_audio,
                               expression_coeffs=args.expression_coeffs or (52 if space == "arkit" else 100),
                               **given(args, "width", "depth", "heads", "interaction", "num_speakers"))
    config = TrainConfig(data=args.data, out=args.out, bf16=training_bf16(args), init=args.init,
                         **given(args, "steps", "batch_size", "lr", "seed", "save_every", "threads", "pause_weight",
                                 "pause_windows", "pause_velocity", "audio_dropout", "guidance", "guidance_max_t",
                                 "snr_floor", "energy_weight"))
    info = {"trained_on": args.trained_on or f"{'built-in corpus' if space == 'arkit' else 'BEAT2'} at {args.data}"}
    print(f"checkpoint written to {train(config, model_config, info)}")


def given(args, *names: str) -> dict:
    """The options the user gave; the others keep their dataclass defaults (the one place they are written)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def training_bf16(args) -> bool:
    """bf16 autocast for train / distill: --precision (auto: only where native), --fp32 forcing fp32."""
    from ..precision import choose_precision

    if args.fp32 and args.precision not in (None, "fp32"):
        raise InputError(f"--fp32 contradicts --precision {args.precision}")
    precision = choose_precision("fp32" if args.fp32 else args.precision)
    if settings.distributed_rank() == 0:  # once under torchrun
        print(f"precision: {precision}")
    return precision.name == "bf16"


def cmd_fold_guidance(args) -> None:
    from .fold import FoldConfig, fold_guidance

    config = FoldConfig(data=args.data, checkpoint=args.checkpoint, out=args.out or args.checkpoint,
                        bf16=training_bf16(args), fresh_noise=fresh_noise_table(args.fresh_noise),
                        **given(args, "steps", "batch_size", "lr", "seed", "threads", "pause_windows",
                                  "data_weight", "pause_velocity"))
    print(f"checkpoint with the guidance folded into its LCM weights written to {fold_guidance(config)}")


def cmd_distill(args) -> None:
    from .distill import DistillConfig, distill

    config = DistillConfig(data=args.data, teacher=args.teacher, out=args.out or args.teacher,
                           bf16=training_bf16(args),
                           sample_guidance=guidance_table(args.sample_guidance),
                           **given(args, "steps", "batch_size", "lr", "seed", "threads", "guidance", "guidance_max_t",
                                   "pause_windows", "data_weight", "pause_velocity"))
    print(f"distilled checkpoint written to {distill(config)}")


def name_value_table(pairs: list[str], option: str, form: str, integer: tuple[str, ...] = ()) -> dict:
    """['gesture=2.5', 'max_t=400'] -> {'gesture': 2.5, 'max_t': 400}: numbers (ints for the names in
    `integer`); a pair that is not NAME=NUMBER is an InputError naming `option` and its `form`."""
    table = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            table[name] = int(value) if name in integer else float(value)
        except ValueError:
            raise InputError(f"{option} takes {form}, got '{pair}'") from None
    return table


def guidance_table(pairs: list[str] | None) -> dict | None:
    """['gesture=2.5', 'max_t=400'] -> {'gesture': 2.5, 'max_t': 400} (diffusion/guidance.py)."""
    from ..diffusion.guidance import Guidance

    if not pairs:
        return None
    table = name_value_table(pairs, "--sample-guidance", "BRANCH=SCALE or max_t=T", integer=("max_t",))
    try:
        Guidance.parse(table, 1000)
    except ValueError as error:
        raise InputError(f"--sample-guidance: {error}") from None
    return table


def fresh_noise_table(pairs: list[str] | None) -> dict | None:
    """['gesture=0.8'] -> {'gesture': 0.8}: per branch, the share of new noise in an LCM step (schedule.lcm_step)."""
    from ..config import BRANCHES

    if not pairs:
        return None
    table = name_value_table(pairs, "--fresh-noise", "BRANCH=SHARE")
    for name, share in table.items():
        if name not in BRANCHES or not 0.0 <= share <= 1.0:
            raise InputError(f"--fresh-noise takes a branch ({', '.join(BRANCHES)}) and a share from 0 to 1, "
                             f"got '{name}={share:g}'")
    return table


def add_training_commands(commands, precision_option) -> None:
    """The train, distill and fold-guidance subcommands; unset options keep the config dataclasses' defaults."""
    from ..config import INTERACTIONS

    p = commands.add_parser("train", help="diffusion training on a BEAT2-layout folder")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    # unset options keep the defaults of TrainConfig (training/train.py) and ModelConfig (config.py)
    for option, kind in (("--steps", int), ("--batch-size", int), ("--lr", float), ("--width", int), ("--depth", int),
                         ("--heads", int), ("--num-speakers", int), ("--save-every", int), ("--threads", int),
                         ("--seed", int), ("--pause-weight", float), ("--pause-windows", float),
                         ("--pause-velocity", float), ("--audio-dropout", float), ("--guidance", float),
                         ("--guidance-max-t", int), ("--snr-floor", float), ("--energy-weight", float)):
        p.add_argument(option, type=kind, default=None)
    p.add_argument("--interaction", choices=INTERACTIONS, default=None)
    p.add_argument("--expression-coeffs", type=int, default=None, help="default: 52 (ARKit corpus) or 100 (BEAT2)")
    precision_option(p, "training")
    p.add_argument("--fp32", action="store_true", help="same as --precision fp32")
    p.add_argument("--trained-on", default=None, help="provenance text stored in the checkpoint")
    p.add_argument("--init", default=None,
                   help="warm start from this checkpoint folder (same architecture; its normalization kept)")
    p.add_argument("--continuation", action="store_true",
                   help="the model also reads known frames and learns to continue them (live, seamless windows)")
    p.add_argument("--pooled-audio", action="store_true",
                   help="each branch's adaLN conditioning also reads the window's mean audio (model.py)")
    p.set_defaults(run=cmd_train)

    p = commands.add_parser("distill", help="per-branch latent-consistency distillation of a trained checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", required=True, help="checkpoint folder with diffusion.safetensors")
    p.add_argument("--out", default=None, help="default: add lcm.safetensors to the teacher's folder")
    for option in ("--steps", "--batch-size", "--threads", "--seed"):  # unset: DistillConfig's defaults
        p.add_argument(option, type=int, default=None)
    for option in ("--lr", "--data-weight", "--pause-velocity"):
        p.add_argument(option, type=float, default=None)
    p.add_argument("--pause-windows", type=float, default=None, help="as train's")
    p.add_argument("--guidance", type=float, default=None,
                   help="the teacher's classifier-free guidance scale (default: the one its checkpoint names)")
    p.add_argument("--guidance-max-t", type=int, default=None,
                   help="guide the teacher at timesteps up to this one (default: as its checkpoint names)")
    p.add_argument("--sample-guidance", nargs="+", default=None, metavar="BRANCH=SCALE",
                   help="how the student samples, e.g. gesture=2.5 max_t=400 (default: unguided)")
    precision_option(p, "distillation")
    p.add_argument("--fp32", action="store_true", help="same as --precision fp32")
    p.set_defaults(run=cmd_distill)

    p = commands.add_parser("fold-guidance", help="fold the LCM samplers' guidance into the student's weights")
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True, help="a distilled checkpoint whose LCM samplers are guided")
    p.add_argument("--out", default=None, help="default: replace the checkpoint's lcm.safetensors")
    for option, kind in (("--steps", int), ("--batch-size", int), ("--lr", float), ("--seed", int), ("--threads", int),
                         ("--pause-windows", float), ("--data-weight", float), ("--pause-velocity", float)):
        p.add_argument(option, type=kind, default=None)
    p.add_argument("--fresh-noise", nargs="+", default=None, metavar="BRANCH=SHARE",
                   help="how the folded student samples: the share of new noise in its LCM steps, e.g. gesture=0.8 "
                        "(default: 1, LCM's own sampler)")
    precision_option(p, "folding")
    p.add_argument("--fp32", action="store_true", help="same as --precision fp32")
    p.set_defaults(run=cmd_fold_guidance)
