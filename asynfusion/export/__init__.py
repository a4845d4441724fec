"""Export a motion for other tools: the output file's extension chooses the format.

    .glb   the body as a skinned mesh (SMPL-X skeleton, face shapes as morph targets) and one animation:
           three.js, Blender, Unity, Unreal (gltf.py)
    .bvh   the skeleton and its rotations: DCC tools and retargeting (bvh.py)
    .csv   the 52 ARKit curves with head and eye rotations in Live Link Face's layout (livelink.py)

Each module's docstring says what its format carries and what it leaves out. The file is written to a
temporary name beside the output and renamed into place, so a failed export leaves nothing at the path.
"""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from ..motion import Motion
from .bvh import motion_to_bvh
from .gltf import motion_to_glb
from .livelink import motion_to_livelink_csv

# extension -> (motion, body_path) -> file bytes
EXPORTERS: dict[str, Callable[[Motion, str | os.PathLike | None], bytes]] = {
    ".glb": motion_to_glb,
    ".bvh": motion_to_bvh,
    ".csv": motion_to_livelink_csv,
}


def export_motion(motion: Motion, path: str | os.PathLike, body_path: str | os.PathLike | None = None) -> Path:
    """Write `motion` to `path` in the format its extension names (.glb, .bvh or .csv); returns the path.

    `body_path`: the SMPL-X model file for the mesh and skeleton (default: $ASYNFUSION_BODY, else the free
    stand-in); the .csv needs none. Raises InputError for an unknown extension, a directory, a motion with
    no frames, or a .csv of a motion whose expressions are not ARKit weights.
    """
    path = Path(path)
    exporter = EXPORTERS.get(path.suffix.lower())
    if exporter is None:
        raise InputError(f"export format is chosen by the extension: {', '.join(EXPORTERS)}; got {path.name!r}")
    if path.is_dir():
        raise InputError(f"output path is a directory: {path}")
    write_atomically(path, exporter(motion, body_path))
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(suffix=path.suffix, dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # mkstemp's 0600 would make the export private to this user
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
