"""Motion metrics of the paper's tables and of the issue's "done" checks, on numpy arrays.

    frechet_distance   FMD / FED / FGD: Fréchet distance of two sets of autoencoder latents
    beat_alignment     BA (EMAGE): audio onsets vs. local minima of upper-body joint speed, sigma 0.3 s
    l1_diversity       Div: mean pairwise L1 distance of joint-position windows
    lip_sync           Pearson correlation of jaw opening with the loudness envelope
    calm_in_pauses     jaw and arm speed in pauses / in speech (lower is calmer)
    coherence          correlation across clips of expression intensity and gesture energy
    seam_ratio         largest jump at a window boundary / the clip's 95th-percentile jump (stitching)

Joint positions come from forward kinematics over the SMPL-X tree with fixed rest offsets, those
of the shipped stand-in body, so every method is measured on the same skeleton (in metres).
"""

import functools

import numpy as np
from scipy import linalg
from scipy.signal import argrelextrema
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

from ..data.corpus.cues import pause_and_speech_frames
from ..motion import ARKIT_BLENDSHAPES, FPS, JAW, JOINT, NUM_JOINTS, Motion

BA_SIGMA = 0.3         # seconds: EMAGE's tolerance between an onset and a motion beat
BA_ORDER = 7           # frames each side a speed minimum must undercut (EMAGE's argrelextrema order)
BA_THRESHOLD = 0.1     # a minimum counts only above 0.1 x the joint's reference speed: not standing still
ARM_JOINTS = [JOINT[f"{side}_{part}"] for side in ("left", "right") for part in ("elbow", "wrist")]
WRISTS = [JOINT["left_wrist"], JOINT["right_wrist"]]
# Expression slots that carry mood in the ARKit corpus: raised brows and a smile (corpus/animate.py).
MOOD_BLENDSHAPES = [ARKIT_BLENDSHAPES.index(name) for name in (
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "mouthSmileLeft", "mouthSmileRight")]


# ----------------------------------------------------------------------------
# Distributions
# ----------------------------------------------------------------------------
def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance of Gaussians fitted to (N, D) and (M, D) samples.

    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), as FID and EMAGE's FGD compute it.

    The covariances get eps on the diagonal so a rank-deficient one (few samples, a constant
    feature) still has a square root; rounding leaves a tiny imaginary part, which is dropped.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    offset = np.eye(a.shape[1]) * eps
    sigma_a, sigma_b = np.atleast_2d(np.cov(a, rowvar=False)) + offset, np.atleast_2d(np.cov(b, rowvar=False)) + offset
    covmean = linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(covmean).all():  # sqrtm can fail on a near-singular product: regularize harder
        offset = np.eye(a.shape[1]) * 1e-3
        covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    return float(max(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean), 0.0))


def l1_diversity(windows: np.ndarray) -> float:
    """Mean pairwise L1 distance of (N, W, ...) windows: summed over features, averaged over frames.

    EMAGE's L1Div sums |x - mean pose| over frames; the pairwise form (TalkSHOW, DiffSHEG) is used
    here because it compares whole stretches of motion with each other, so identical clips score 0.
    """
    if len(windows) < 2:
        return 0.0
    flat = np.asarray(windows, np.float64).reshape(len(windows), -1)
    return float(pdist(flat, "cityblock").mean() / windows.shape[1])


# ----------------------------------------------------------------------------
# Joint positions
# ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def rest_skeleton() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(parents (55,), rest offsets from the parent (55, 3), hand mean pose (165,)) of the stand-in body."""
    from ..render.body import BUNDLED_BODY

    with np.load(BUNDLED_BODY, allow_pickle=False) as body:
        parents = body["kintree_table"][0].astype(np.int64)
        rest = body["J_regressor"].astype(np.float64) @ body["v_template"].astype(np.float64)  # (55, 3)
        pose_mean = np.zeros(NUM_JOINTS * 3)
        pose_mean[25 * 3:40 * 3], pose_mean[40 * 3:] = body["hands_meanl"], body["hands_meanr"]
    offsets = rest - np.where(parents[:, None] >= 0, rest[np.maximum(parents, 0)], 0.0)
    return parents, offsets, pose_mean


def joint_positions(poses: np.ndarray) -> np.ndarray:
    """(T, 165) axis-angle -> (T, 55, 3) joint positions, root at the origin (no translation)."""
    parents, offsets, pose_mean = rest_skeleton()
    num_frames = len(poses)
    # BEAT2 fingers are offsets from the relaxed hand (smplx flat_hand_mean=False): add it back.
    rotations = Rotation.from_rotvec((poses + pose_mean).reshape(-1, 3)).as_matrix()
    rotations = rotations.reshape(num_frames, NUM_JOINTS, 3, 3)       # (T, 55, 3, 3) local rotations
    world = np.zeros_like(rotations)                  # (T, 55, 3, 3) global rotations
    positions = np.zeros((num_frames, NUM_JOINTS, 3))
    for j, parent in enumerate(parents):              # parents come before children in SMPL-X
        if parent < 0:
            world[:, j] = rotations[:, j]
            continue
        world[:, j] = world[:, parent] @ rotations[:, j]
        positions[:, j] = positions[:, parent] + world[:, parent] @ offsets[j]
    return positions


def speed(positions: np.ndarray, fps: float = FPS) -> np.ndarray:
    """(T, J, 3) positions -> (T, J) speed, central differences inside, one-sided at the ends (as EMAGE)."""
    velocity = np.gradient(positions, 1.0 / fps, axis=0) if len(positions) > 1 else np.zeros_like(positions)
    return np.linalg.norm(velocity, axis=-1)


def jaw_opening(motion: Motion) -> np.ndarray:
    """(T,) jaw rotation angle in radians: the one mouth control every SMPL-X body shares."""
    return np.linalg.norm(motion.poses.reshape(-1, NUM_JOINTS, 3)[:, JAW], axis=-1)


# ----------------------------------------------------------------------------
# Audio-motion synchrony
# ----------------------------------------------------------------------------
def audio_onsets(samples: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
    """Onset times in seconds, librosa's detector with EMAGE's hop of 512 samples."""
    import librosa

    return librosa.onset.onset_detect(y=np.asarray(samples, np.float32), sr=sample_rate, hop_length=512,
                                      units="time")


def motion_beats(joint_speed: np.ndarray, reference_speed: np.ndarray, order: int = BA_ORDER,
                 threshold: float = BA_THRESHOLD) -> list[np.ndarray]:
    """Per joint, frames of local speed minima (`order` frames each side) where the joint is moving."""
    beats = []
    for j in range(joint_speed.shape[1]):
        normalized = joint_speed[:, j] / reference_speed[j]
        minima = argrelextrema(normalized, np.less, order=order)[0]
        beats.append(minima[normalized[minima] > threshold])
    return beats


def beat_alignment(onsets: np.ndarray, joint_speed: np.ndarray, reference_speed: np.ndarray,
                   fps: float = FPS, sigma: float = BA_SIGMA) -> float:
    """EMAGE's BA: mean over onsets of exp(-d^2 / 2 sigma^2), d the distance to the nearest motion beat.

    Averaged over joints; a joint with no beats scores 0. `reference_speed` (J,) is each joint's mean
    speed in the ground truth (EMAGE's "mmae"); joints that never move there (spine1 under a fixed
    pelvis) have no beats to align and are left out rather than counted as 0.
    """
    onsets = np.asarray(onsets, np.float64)
    moving = reference_speed > 1e-6
    if len(onsets) == 0 or not moving.any():
        return float("nan")
    scores = []
    for beats in motion_beats(joint_speed[:, moving], reference_speed[moving]):
        if len(beats) == 0:
            scores.append(0.0)
            continue
        distance = np.abs(onsets[:, None] - beats[None, :] / fps).min(1)
        scores.append(float(np.exp(-distance ** 2 / (2 * sigma ** 2)).mean()))
    return float(np.mean(scores))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant (a still jaw does not follow speech)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / norm) if norm > 1e-12 else 0.0


def lip_sync(jaw: np.ndarray, loudness: np.ndarray) -> float:
    """Pearson correlation of jaw opening with the loudness envelope (same frames)."""
    n = min(len(jaw), len(loudness))
    return pearson(jaw[:n], loudness[:n])


def calm_in_pauses(jaw: np.ndarray, positions: np.ndarray, loudness: np.ndarray,
                   fps: float = FPS) -> tuple[float, float]:
    """(jaw, arms): mean speed in settled pauses / mean speed in speech; nan without both kinds of frame.

    Jaw speed is angular (rad/s), arm speed that of the elbows and wrists (m/s). 0 is perfectly still
    in pauses; 1 moves as much in pauses as while speaking.
    """
    n = min(len(jaw), len(loudness))
    pause, speech = pause_and_speech_frames(loudness[:n])
    if not pause.any() or not speech.any():
        return float("nan"), float("nan")
    jaw_speed = np.abs(np.gradient(jaw[:n], 1.0 / fps)) if n > 1 else np.zeros(n)
    arm_speed = speed(positions[:n, ARM_JOINTS], fps).mean(1)

    def ratio(x):
        return float(x[pause].mean() / max(x[speech].mean(), 1e-9))
    return ratio(jaw_speed), ratio(arm_speed)


# ----------------------------------------------------------------------------
# Face-body coherence
# ----------------------------------------------------------------------------
def expression_intensity(motion: Motion) -> float:
    """How animated the face is: mean brow-raise + smile weight (ARKit); mean |coefficient| otherwise."""
    if motion.expression_space == "arkit":
        return float(motion.expressions[:, MOOD_BLENDSHAPES].mean())
    return float(np.abs(motion.expressions).mean())


def gesture_energy(positions: np.ndarray, fps: float = FPS) -> float:
    """How big the gestures are: mean wrist speed (m/s) over the clip."""
    return float(speed(positions[:, WRISTS], fps).mean())


def coherence(intensities, energies) -> float:
    """Face-body coherence: Pearson correlation, across clips, of expression intensity and gesture energy.

    A speaker's energy moves face and body together (bigger gestures with raised brows and a smile);
    the audio reveals it only in part, so a model that generates the face and the body independently
    from the audio couples them less than the data does. nan for fewer than 3 clips.
    """
    if len(intensities) < 3:
        return float("nan")
    return pearson(np.asarray(intensities), np.asarray(energies))



# ----------------------------------------------------------------------------
# Window seams
# ----------------------------------------------------------------------------
def window_boundaries(starts, window: int, num_frames: int) -> np.ndarray:
    """Frames where a window's contribution starts or stops, for windows of `window` frames at `starts`.

    pipeline.Pipeline.generate samples overlapping windows (pipeline.window_starts) and cross-fades
    them (pipeline.blend_weights). Window i > 0 enters at frame starts[i], where its fade-in begins,
    and window i < last leaves at frame starts[i] + window, the first frame after its fade-out ends.
    Those are the only frames where the set of windows blended into a frame changes, so the only
    places where stitching itself can make the motion jump. The clip's own first and last frames are
    not boundaries. Returns the sorted, unique boundary frames b (0 < b < num_frames). A checkpoint that
    continues motion joins its windows another way; pipeline.join_boundaries gives the boundaries of
    whichever join the pipeline uses.
    """
    starts = [int(s) for s in starts]
    frames = set(starts[1:]) | {s + window for s in starts[:-1]}
    return np.array(sorted(b for b in frames if 0 < b < num_frames), dtype=np.int64)


def frame_jumps(signal: np.ndarray) -> np.ndarray:
    """(T, ...) -> (T - 1,): jump[t] = Euclidean norm of signal[t + 1] - signal[t] over all other axes."""
    signal = np.asarray(signal, np.float64)
    return np.linalg.norm(np.diff(signal, axis=0).reshape(len(signal) - 1, -1), axis=1)


def seam_ratio(signal: np.ndarray, boundaries, percentile: float = 95.0) -> float:
    """How much stitching shows: the largest jump at a window boundary / a typical big jump elsewhere.

    `signal` is (T, ...) per frame (joint positions (T, 55, 3), features (T, D), the jaw angle (T,));
    frame_jumps turns it into T - 1 frame-to-frame jumps, each the Euclidean norm of the change over
    all other axes. The jump *at* boundary frame b (see window_boundaries) is the one into it, from
    frame b - 1 to frame b. The ratio is

        max over boundaries b of jump[b - 1]  /  `percentile`-th percentile of all other jumps.

    ~1 or below: no boundary jumps more than the clip's own big movements do (a boundary's jump is
    drawn from the same distribution as the others; with ~70 boundaries, the largest lands near the
    99th percentile). Well above 1: a step at a boundary. nan without boundaries or without other jumps;
    0 when nothing moves at all, inf when only a boundary moves.
    """
    jumps = frame_jumps(signal)
    boundaries = np.asarray(boundaries, np.int64)
    boundaries = boundaries[(boundaries > 0) & (boundaries < len(jumps) + 1)]
    at_seam = np.zeros(len(jumps), bool)
    at_seam[boundaries - 1] = True
    if not at_seam.any() or at_seam.all():
        return float("nan")
    seam, typical = float(jumps[at_seam].max()), float(np.percentile(jumps[~at_seam], percentile))
    if typical <= 1e-12:
        return 0.0 if seam <= 1e-12 else float("inf")
    return seam / typical
