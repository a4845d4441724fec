"""What the page says: the introduction, the checkpoint's provenance, the sampler choices, the timing
table of Generate and the table and chart of Compare. Plain strings and pandas frames, no Gradio."""

import pandas as pd

from ..diffusion.registry import REFERENCE_SAMPLER, SAMPLERS

PAPER_URL = "https://arxiv.org/abs/2505.15058"
BASELINE_LABEL = "rule-based"
TIMING_COLUMNS = ["measure", "value"]
# The timing table's labels stay short so its values fit a phone's width; what they mean is said under it.
TIMING_NOTE = ("NFE: network evaluations. Sampling threads: the cores not busy with other work. Guidance: "
               "classifier-free; a guided step evaluates the network with and without the audio. "
               "Real-time factor: generation / audio length.")
COMPARE_COLUMNS = ["sampler", "steps E/G", "NFE E", "NFE G", "seconds E", "seconds G", "seconds total", "GFLOPs",
                   "real-time factor", f"speed-up vs {SAMPLERS[REFERENCE_SAMPLER].label}"]


def sampler_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered sampler: the page's radio buttons."""
    return [(spec.title(), name) for name, spec in SAMPLERS.items()]


def chart_order() -> list[str]:
    """The bar chart's x order: the samplers as registered, then the baseline."""
    return [spec.title() for spec in SAMPLERS.values()] + [BASELINE_LABEL]


def trim_label(cap: float) -> str:
    """The checkbox that cuts long audio to the cap (the refusal message names it)."""
    return f"Use only the first {cap:g} s of longer audio"


def provenance(checkpoint) -> str:
    """The checkpoint's own account of itself (config.json's trained_on and description), in Markdown."""
    trained_on = checkpoint.info.get("trained_on", "untrained")
    description = checkpoint.info.get("description", "").strip().rstrip(".")
    name = checkpoint.path.name if checkpoint.path else "in-memory"
    text = f"**Checkpoint** `{name}`, trained on: **{trained_on}**." + (f" {description}." if description else "")
    if not checkpoint.trained:
        text = ("⚠️ " + text + " Its motion is noise: it only shows that speech goes in and a rendered, timed "
                "avatar comes out. Timings are real; the motion is not.")
    return text


def about(checkpoint) -> str:
    """The page's introduction: the method, the samplers, the paper, and where the weights come from."""
    samplers = " ".join(f"*{spec.title()}*: {spec.about}." for spec in SAMPLERS.values())
    return f"""# AsynFusion: speech to a talking, gesturing SMPL-X avatar

A dual-branch diffusion transformer generates **facial expressions** and **body and hand gestures** from
speech, in parallel; after every block a cooperative-synchronization (CoSync) layer lets each branch read
the other, so the face and the hands stay in step. The motion is SMPL-X parameters in the BEAT2 layout,
rendered here on a free stand-in human. Paper: [AsynFusion (Zhang et al., 2025)]({PAPER_URL}).

**Samplers** (steps of the expression / gesture branch). {samplers} **Compare** runs them all on your clip
and times each branch.

{provenance(checkpoint)} This demo's weights come from the project's built-in corpus (synthetic speech with
procedural motion), not from BEAT2."""


def generation_note(request, speech_seconds: float, trimmed: bool, cap: float, generation: float, precision) -> str:
    """Generate's note: what ran on how much speech, and how long it took."""
    cut = f" (its first {cap:g} s)" if trimmed else ""
    return (f"{request.title} steps, seed {request.seed}, on {speech_seconds:.1f} s of speech{cut}: generated in "
            f"{generation:.2f} s ({precision.name}).")


def timing_table(report, features_seconds: float, render: dict | None, precision,
                 export_seconds: float | None = None) -> pd.DataFrame:
    """Generate's timing panel: the precision and why, network evaluations and seconds per branch,
    generation, the 3D player's avatar (when made), rendering (once done), audio."""
    s = report.sampling
    generation = features_seconds + report.seconds_total
    rows = [
        ("precision", str(precision)),
        ("sampling threads", report.threads),
        ("guidance", s.guidance),
        ("expression branch: NFE", s.nfe_expression),
        ("expression branch: seconds", round(s.seconds_expression, 3)),
        ("gesture branch: NFE", s.nfe_gesture),
        ("gesture branch: seconds", round(s.seconds_gesture, 3)),
        ("audio features: seconds", round(features_seconds, 3)),
        ("generation in all: seconds", round(generation, 3)),
    ]
    if export_seconds is not None:
        rows.append(("3D avatar (.glb): seconds", round(export_seconds, 3)))
    if render is not None:
        rows.append((f"rendering {render['frames']} frames: seconds", round(render["seconds"], 2)))
    else:
        rows.append(("rendering the video", "in progress"))
    rows += [
        ("audio length: seconds", round(report.audio_seconds, 2)),
        ("real-time factor", round(generation / report.audio_seconds, 4)),
    ]
    return pd.DataFrame(rows, columns=TIMING_COLUMNS, dtype=object)


def sampler_row(title: str, steps: str, report) -> dict:
    """One row of Compare's table from a GenerationReport."""
    s = report.sampling
    return {"sampler": title, "steps E/G": steps, "NFE E": s.nfe_expression, "NFE G": s.nfe_gesture,
            "seconds E": round(s.seconds_expression, 3), "seconds G": round(s.seconds_gesture, 3),
            "seconds total": round(report.seconds_total, 3), "GFLOPs": round(s.gflops, 1)}


def baseline_row(seconds: float) -> dict:
    return {"sampler": BASELINE_LABEL, "steps E/G": "-", "NFE E": 0, "NFE G": 0, "seconds E": 0.0,
            "seconds G": 0.0, "seconds total": round(seconds, 3), "GFLOPs": 0.0}


def comparison_table(rows: list[dict], speech_seconds: float) -> pd.DataFrame:
    """Compare's table: the rows, their real-time factor and the speed-up against the reference sampler."""
    table = pd.DataFrame(rows)
    table["real-time factor"] = (table["seconds total"] / speech_seconds).round(4)
    is_reference = table["sampler"] == SAMPLERS[REFERENCE_SAMPLER].label
    reference = table["seconds total"][is_reference].iloc[0] if is_reference.any() else table["seconds total"].iloc[0]
    table[COMPARE_COLUMNS[-1]] = (reference / table["seconds total"].clip(lower=1e-9)).round(2)
    return table[COMPARE_COLUMNS]


def comparison_by_measure(table: pd.DataFrame) -> pd.DataFrame:
    """Compare's table as the page shows it: a row per measure, a column per sampler, so that it fits a
    phone's width (ten columns of numbers do not)."""
    by_measure = table.set_index("sampler").T.astype(object)
    return by_measure.rename_axis(columns=None).reset_index(names="measure")


def comparison_chart(table: pd.DataFrame) -> pd.DataFrame:
    """Seconds per sampler split into expression branch, gesture branch and the rest (stitching, the
    shared audio encoder, the baseline's whole run): long form, one row per bar segment."""
    rows = []
    for _, row in table.iterrows():
        name = row["sampler"] if row["steps E/G"] == "-" else f"{row['sampler']} {row['steps E/G']}"
        rest = row["seconds total"] - row["seconds E"] - row["seconds G"]
        for part, seconds in (("expression branch", row["seconds E"]),
                              ("gesture branch", row["seconds G"]), ("other", max(rest, 0.0))):
            rows.append({"sampler": name, "part": part, "seconds": round(float(seconds), 3)})
    return pd.DataFrame(rows)
