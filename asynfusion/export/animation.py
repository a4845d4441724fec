"""The .glb's animation alone, for the app's 3D player, which has the body already (a .glb of it).

A result's .glb repeats the whole body (1.9 MB for 10 s on the stand-in, 1.5 MB of it the mesh and face
shapes); the player loads the body once and then takes only this per result: the same values the .glb's
animation holds (gltf.animation_values), 0.3 MB for 10 s. Little-endian, laid out like a GLB's chunks:

    uint32        the header's length in bytes (a multiple of 4)
    header        JSON, space-padded: {"fps", "frames" (T), "joints" (the .glb's joint node names, in
                  order), "targets" (K: morph weights per frame, 0 when the face shapes stay at rest)}
    float32 data  joint rotations (55, T, 4) joint by joint, quaternions x y z w; the root joint's
                  translation (T, 3); morph weights (T, K) frame by frame, as the .glb's mesh names them
"""

import json
import struct

from ..motion import JOINT_NAMES, Motion
from .gltf import animation_values, target_names
from .rig import load_rig, require_frames


def motion_to_animation(motion: Motion, body_path=None) -> bytes:
    """The animation of `motion_to_glb(motion, body_path)`, without the body."""
    require_frames(motion)
    rig = load_rig(motion, body_path)
    quaternions, root, weights = animation_values(rig, motion, len(target_names(rig)))
    header = {"fps": motion.fps, "frames": motion.num_frames, "joints": JOINT_NAMES,
              "targets": 0 if weights is None else weights.shape[1]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    arrays = [quaternions.transpose(1, 0, 2), root] + ([] if weights is None else [weights])
    return struct.pack("<I", len(text)) + text + b"".join(array.astype("<f4").tobytes() for array in arrays)
