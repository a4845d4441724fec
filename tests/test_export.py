"""Export (#13): .glb, .bvh and Live Link Face .csv, each read back by something other than the writer.

The .glb goes through the Khronos glTF validator (tools/node_modules, `bash tools/setup.sh --dev`) and is
read back with pygltflib; its skeleton, animated by the file's own samplers, must put every joint where the
package's forward kinematics does, within 1 mm. The .bvh is read back by a small parser here and by Blender.
Blender (bpy 4.5 LTS in tools/blender-venv) imports both with its own importers.
"""

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from asynfusion.cli import main
from asynfusion.evaluation.metrics import joint_positions, rest_skeleton
from asynfusion.export import EXPORTERS, export_motion
from asynfusion.export.livelink import BLENDSHAPE_COUNT, LIVE_LINK_FACE_BLENDSHAPES
from asynfusion.motion import ARKIT_BLENDSHAPES, JOINT, JOINT_NAMES, Motion, save_motion

TOOLS = Path(__file__).resolve().parent.parent / "tools"
VALIDATOR = TOOLS / "node_modules" / "gltf-validator"
BLENDER_PYTHON = TOOLS / "blender-venv" / "bin" / "python"
MILLIMETRE = 1e-3
COMPONENTS = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}
WIDTHS = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def smooth_motion(num_frames: int, seed: int = 0, expression_space: str = "arkit") -> Motion:
    """Smooth random motion: every joint turning up to ~0.6 rad, a wandering root, ARKit weights in [0, 1]."""
    rng = np.random.default_rng(seed)

    def wander(shape, scale):
        path = np.cumsum(rng.normal(0, 1, shape), axis=0)
        path -= path.mean(0)
        return scale * path / (np.abs(path).max(0) + 1e-9)

    expressions = np.zeros((num_frames, 100))
    expressions[:, :52] = np.clip(0.5 + wander((num_frames, 52), 0.5), 0, 1)
    return Motion(wander((num_frames, 165), 0.6), expressions, wander((num_frames, 3), 0.2),
                  expression_space=expression_space, metadata={"sampler": "test"})


def expected_joints(motion: Motion, frames) -> np.ndarray:
    """(F, 55, 3) world joint positions: the package's FK (root at 0) moved to the rest root plus `trans`."""
    rest_root = rest_skeleton()[1][0]
    return joint_positions(motion.poses[frames].astype(np.float64)) + rest_root + motion.trans[frames, None]


@pytest.fixture(scope="module")
def motion() -> Motion:
    return smooth_motion(45)


@pytest.fixture(scope="module")
def exported(motion, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("export")
    return {suffix: export_motion(motion, folder / f"motion{suffix}") for suffix in EXPORTERS}


# ----------------------------------------------------------------------------
# Reading a .glb back: pygltflib parses, numpy decodes the accessors
# ----------------------------------------------------------------------------
class GlbReader:
    def __init__(self, path: Path):
        pygltflib = pytest.importorskip("pygltflib", reason="pygltflib reads the .glb back: bash tools/setup.sh --dev")
        self.gltf = pygltflib.GLTF2().load(str(path))
        self.blob = self.gltf.binary_blob()

    def _view(self, view_index: int, byte_offset: int, dtype, count: int) -> np.ndarray:
        view = self.gltf.bufferViews[view_index]
        return np.frombuffer(self.blob, dtype, count, (view.byteOffset or 0) + (byte_offset or 0))

    def array(self, index: int) -> np.ndarray:
        """Accessor `index` as (count, width), sparse values applied over the base (zeros without a bufferView)."""
        accessor = self.gltf.accessors[index]
        dtype, width = COMPONENTS[accessor.componentType], WIDTHS[accessor.type]
        data = np.zeros((accessor.count, width), dtype)
        if accessor.bufferView is not None:
            data[:] = self._view(accessor.bufferView, accessor.byteOffset, dtype, accessor.count * width).reshape(
                accessor.count, width)
        if accessor.sparse:
            sparse = accessor.sparse
            rows = self._view(sparse.indices.bufferView, sparse.indices.byteOffset,
                              COMPONENTS[sparse.indices.componentType], sparse.count)
            data[rows] = self._view(sparse.values.bufferView, sparse.values.byteOffset, dtype,
                                    sparse.count * width).reshape(sparse.count, width)
        return data

    def channel_values(self, frame: int) -> dict[tuple[int, str], np.ndarray]:
        """{(node, path): value} of the animation at keyframe `frame`."""
        animation = self.gltf.animations[0]
        values = {}
        for channel in animation.channels:
            output = self.array(animation.samplers[channel.sampler].output)
            if channel.target.path == "weights":
                output = output.reshape(self.array(animation.samplers[channel.sampler].input).shape[0], -1)
            values[(channel.target.node, channel.target.path)] = output[frame]
        return values

    def world_matrices(self, frame: int) -> dict[int, np.ndarray]:
        """Node index -> 4x4 world matrix at keyframe `frame`, from the scene's hierarchy."""
        animated, world = self.channel_values(frame), {}

        def visit(node_index: int, parent: np.ndarray):
            node = self.gltf.nodes[node_index]
            local = np.eye(4)
            local[:3, :3] = Rotation.from_quat(animated.get((node_index, "rotation"), node.rotation or [0, 0, 0, 1]))\
                .as_matrix()
            local[:3, 3] = animated.get((node_index, "translation"), node.translation or [0, 0, 0])
            world[node_index] = parent @ local
            for child in node.children or []:
                visit(child, world[node_index])

        for root in self.gltf.scenes[self.gltf.scene].nodes:
            visit(root, np.eye(4))
        return world

    def joint_positions(self, frame: int) -> np.ndarray:
        """(55, 3) world positions of the skin's joints at keyframe `frame`."""
        world = self.world_matrices(frame)
        return np.stack([world[node][:3, 3] for node in self.gltf.skins[0].joints])

    def skinned_vertices(self, frame: int) -> np.ndarray:
        """(V, 3) the mesh as a glTF client draws it: morphs, then linear-blend skinning."""
        primitive = self.gltf.meshes[0].primitives[0]
        vertices = self.array(primitive.attributes.POSITION).astype(np.float64)
        weights = self.channel_values(frame).get((0, "weights"), np.zeros(len(primitive.targets)))
        for weight, target in zip(weights, primitive.targets):
            vertices += weight * self.array(target["POSITION"])
        skin = self.gltf.skins[0]
        inverse_binds = self.array(skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
        world = self.world_matrices(frame)
        joint_matrices = np.stack([world[node] @ inverse_binds[k] for k, node in enumerate(skin.joints)])
        joints, joint_weights = self.array(primitive.attributes.JOINTS_0), self.array(primitive.attributes.WEIGHTS_0)
        per_vertex = np.einsum("vi,vixy->vxy", joint_weights, joint_matrices[joints])              # (V, 4, 4)
        return np.einsum("vxy,vy->vx", per_vertex[:, :3, :3], vertices) + per_vertex[:, :3, 3]


def validate(path: Path) -> dict:
    """The Khronos glTF validator's report on `path`."""
    if shutil.which("node") is None or not VALIDATOR.is_dir():
        pytest.skip(f"the Khronos glTF validator is not installed in {VALIDATOR.parent}: bash tools/setup.sh --dev")
    result = subprocess.run(["node", str(TOOLS / "validate_gltf.js"), str(path)], capture_output=True, text=True,
                            timeout=120, check=True)
    return json.loads(result.stdout)


# ----------------------------------------------------------------------------
# .glb
# ----------------------------------------------------------------------------
def test_glb_passes_the_khronos_validator(exported):
    report = validate(exported[".glb"])
    issues = report["issues"]
    assert issues["numErrors"] == 0, issues["messages"]
    assert issues["numWarnings"] == 0, issues["messages"]
    assert report["info"]["hasSkins"] and report["info"]["hasMorphTargets"] and report["info"]["animationCount"] == 1
    assert report["info"]["maxInfluences"] == 4


def test_glb_joints_follow_the_package_kinematics_at_every_frame(exported, motion):
    glb = GlbReader(exported[".glb"])
    assert [glb.gltf.nodes[n].name for n in glb.gltf.skins[0].joints] == JOINT_NAMES
    times = glb.array(glb.gltf.animations[0].samplers[0].input)[:, 0]
    np.testing.assert_allclose(times, np.arange(motion.num_frames) / 30, atol=1e-6)
    expected = expected_joints(motion, np.arange(motion.num_frames))
    for frame in range(motion.num_frames):
        error = np.linalg.norm(glb.joint_positions(frame) - expected[frame], axis=-1)
        assert error.max() < MILLIMETRE, (frame, JOINT_NAMES[error.argmax()], error.max())


def test_glb_skinned_mesh_matches_the_renderer(exported, motion):
    """The skin (4 joints per vertex, inverse bind matrices) and morphs against the renderer's full SMPL-X skinning."""
    from asynfusion.render.body import body_vertices, load_body

    glb, frames = GlbReader(exported[".glb"]), [0, 30]
    rendered = body_vertices(load_body(None), motion, follow=None)[frames]
    drawn = np.stack([glb.skinned_vertices(frame) for frame in frames])[:, :rendered.shape[1]]  # the body's own
    drawn[..., 1] -= drawn[0, :, 1].min()  # the renderer stands frame 0's lowest point on the floor
    error = np.linalg.norm(drawn - rendered, axis=-1)
    # What is left: weights past the 4 heaviest, and joints that SMPL-X moves with the expression.
    assert error.mean() < MILLIMETRE and error.max() < 0.02, (error.mean(), error.max())


def test_glb_morph_targets_are_the_52_arkit_shapes_driven_by_the_motion(exported, motion):
    glb = GlbReader(exported[".glb"])
    mesh = glb.gltf.meshes[0]
    assert mesh.extras["targetNames"] == ARKIT_BLENDSHAPES
    assert len(mesh.primitives[0].targets) == 52
    sparse = [glb.gltf.accessors[target["POSITION"]].sparse for target in mesh.primitives[0].targets]
    assert sum(s is not None for s in sparse) == 51  # jawOpen moves no vertex: the jaw joint opens the mouth
    for frame in (0, 17, motion.num_frames - 1):
        np.testing.assert_array_equal(glb.channel_values(frame)[(0, "weights")], motion.expressions[frame, :52])


def test_glb_wears_the_video_outfit(exported):
    """A primitive and material per region of the renderer's outfit, over one closed mesh cut along its seams;
    the colours are the video's, decoded to linear as glTF defines them."""
    from asynfusion.render import outfit
    from asynfusion.render.body import load_body

    glb, body = GlbReader(exported[".glb"]), load_body(None)
    primitives = glb.gltf.meshes[0].primitives
    materials = [glb.gltf.materials[primitive.material] for primitive in primitives]
    assert [material.name for material in materials] == list(outfit.REGIONS)
    for material, cloth in zip(materials[1:], outfit.OUTFIT):
        srgb = np.array(cloth.color)
        expected = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
        np.testing.assert_allclose(material.pbrMetallicRoughness.baseColorFactor[:3], expected, atol=1e-6)
    assert materials[0].pbrMetallicRoughness.baseColorFactor == [1.0, 1.0, 1.0, 1.0]
    assert [primitive.attributes.COLOR_0 is not None for primitive in primitives] == [True, False, False, False]
    assert len({primitive.attributes.POSITION for primitive in primitives}) == 1  # one set of vertices

    # the body's own vertices first, then the seams'; the skin's colours are the renderer's
    template = body.v_template.numpy()
    positions = glb.array(primitives[0].attributes.POSITION)
    np.testing.assert_array_equal(positions[:len(template)], template)
    linear = glb.array(primitives[0].attributes.COLOR_0)[:len(template), :3] / 65535
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055) * 255
    assert np.abs(srgb - outfit.vertex_colors(body)).max() < 0.1

    # each face of the body's own vertices is in the region the shader colours at its centre
    faces = [glb.array(primitive.indices).reshape(-1, 3).astype(np.int64) for primitive in primitives]
    values = outfit.cuts(body)
    for region, region_faces in enumerate(faces):
        inside = region_faces[(region_faces < len(template)).all(1)]
        assert (outfit.point_regions(values[inside].mean(1)) == region).all(), outfit.REGIONS[region]
    # the seams are straight, as the shader draws them: the waist and the shoes' tops level, the sleeves'
    # ends upright, at a fixed distance from the pelvis (within the 0.1 mm by which a vertex of the body
    # counts as on a cut, rather than leave a sliver of a face beside it)
    regions_of = [set() for _ in positions]
    for region, region_faces in enumerate(faces):
        for vertex in np.unique(region_faces):
            regions_of[vertex].add(outfit.REGIONS[region])
    pelvis_x = next(node.translation[0] for node in glb.gltf.nodes if node.name == "pelvis")

    def seam(*regions):
        return positions[[k for k, found in enumerate(regions_of) if found >= set(regions)]]

    assert len(seam("shoes", "trousers")) > 20 and np.ptp(seam("shoes", "trousers")[:, 1]) < 2e-4
    assert len(seam("trousers", "shirt")) > 20 and np.ptp(seam("trousers", "shirt")[:, 1]) < 2e-4
    shirt_skin = seam("shirt", "skin")
    sleeve_ends = shirt_skin[shirt_skin[:, 1] < shirt_skin[:, 1].max() - 0.08]  # below the neckline
    assert len(sleeve_ends) > 20 and np.ptp(np.abs(sleeve_ends[:, 0] - pelvis_x)) < 2e-4
    # and the cut mesh is closed: every edge met once each way round, over all the regions
    all_faces = np.concatenate(faces)
    edges = all_faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    count = len(positions)
    assert np.array_equal(np.sort(edges[:, 0] * count + edges[:, 1]), np.sort(edges[:, 1] * count + edges[:, 0]))

    def area(vertices, triangles):
        corners = vertices[triangles]
        return 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)

    assert area(positions.astype(np.float64), all_faces).sum() == pytest.approx(
        area(template.astype(np.float64), np.asarray(body.faces, np.int64)).sum(), rel=1e-5)


def test_player_animation_is_the_glb_animation(exported, motion):
    """export/animation.py's file (what the app's player takes per result) holds the .glb's animation exactly."""
    from asynfusion.export.animation import motion_to_animation

    data = motion_to_animation(motion)
    length = int.from_bytes(data[:4], "little")
    header = json.loads(data[4:4 + length])
    assert header == {"fps": 30.0, "frames": motion.num_frames, "joints": JOINT_NAMES, "targets": 52}
    values = np.frombuffer(data, "<f4", offset=4 + length)
    frames = motion.num_frames
    rotations, rest = values[:55 * frames * 4].reshape(55, frames, 4), values[55 * frames * 4:]
    translation, weights = rest[:frames * 3].reshape(frames, 3), rest[frames * 3:].reshape(frames, 52)
    glb = GlbReader(exported[".glb"])
    nodes = {glb.gltf.nodes[node].name: node for node in glb.gltf.skins[0].joints}
    for frame in (0, 1, frames - 1):
        channels = glb.channel_values(frame)
        for joint, name in enumerate(header["joints"]):
            np.testing.assert_array_equal(rotations[joint, frame], channels[(nodes[name], "rotation")])
        np.testing.assert_array_equal(translation[frame], channels[(nodes["pelvis"], "translation")])
        np.testing.assert_array_equal(weights[frame], channels[(0, "weights")])


def test_glb_of_ten_seconds_on_the_free_body_is_under_8_mb(tmp_path):
    path = export_motion(smooth_motion(300, seed=1), tmp_path / "ten-seconds.glb")
    assert path.stat().st_size < 8_000_000, path.stat().st_size


def smplx_joints(body_path: Path, motion: Motion, frames: list[int]) -> np.ndarray:
    """(F, 55, 3) joints by smplx's own kinematics (its `lbs` steps), no expression: glTF joints cannot follow it."""
    import torch
    from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, vertices2joints

    from asynfusion.render.body import load_body

    body = load_body(body_path)
    poses = torch.as_tensor(motion.poses[frames]) + body.pose_mean                     # smplx's flat_hand_mean=False
    rotations = batch_rodrigues(poses.reshape(-1, 3)).reshape(len(frames), -1, 3, 3)
    betas = torch.as_tensor(motion.betas[None, :body.num_betas])
    shaped = body.v_template + blend_shapes(betas, body.shapedirs)[0]
    rest = vertices2joints(body.J_regressor, shaped[None]).expand(len(frames), -1, -1)
    joints, _ = batch_rigid_transform(rotations, rest, body.parents)
    return joints.numpy() + motion.trans[frames, None]


def test_glb_on_a_real_smplx_body_carries_its_flame_components(tmp_path, write_tiny_smplx):
    body = write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz")  # with a hand mean pose, unlike the stand-in
    motion = smooth_motion(12, expression_space="flame")
    motion.betas[:10] = np.random.default_rng(0).normal(0, 1, 10)  # a real SMPL-X body takes the motion's shape
    glb = GlbReader(export_motion(motion, tmp_path / "flame.glb", body_path=body))
    names = glb.gltf.meshes[0].extras["targetNames"]
    assert names == [f"expression_{k:03d}" for k in range(len(names))] and len(names) == 10
    np.testing.assert_array_equal(glb.channel_values(5)[(0, "weights")], motion.expressions[5, :10])
    frames = [0, 5, 11]
    positions = np.stack([glb.joint_positions(frame) for frame in frames])
    assert np.abs(positions - smplx_joints(body, motion, frames)).max() < MILLIMETRE
    assert validate(tmp_path / "flame.glb")["issues"]["numErrors"] == 0


# ----------------------------------------------------------------------------
# .bvh
# ----------------------------------------------------------------------------
def read_bvh(text: str) -> tuple[list[dict], np.ndarray, float]:
    """(joints with name, parent, offset, channels; (T, channels) values; frame time) of a BVH file."""
    hierarchy, motion_block = text.split("MOTION")
    joints, stack, current = [], [], None
    for tokens in (line.split() for line in hierarchy.splitlines()):
        if not tokens:
            continue
        if tokens[0] in ("ROOT", "JOINT"):
            joints.append({"name": tokens[1], "parent": stack[-1] if stack else -1, "channels": []})
            current = len(joints) - 1
        elif tokens[0] == "End":
            current = None
        elif tokens[0] == "{":
            stack.append(current)
        elif tokens[0] == "}":
            stack.pop()
        elif tokens[0] == "OFFSET" and current is not None:
            joints[current]["offset"] = np.array(tokens[1:4], float)
        elif tokens[0] == "CHANNELS":
            joints[current]["channels"] = tokens[2:]
    lines = motion_block.strip().splitlines()
    frame_time = float(lines[1].split(":")[1])
    values = np.array([line.split() for line in lines[2:]], float)
    assert len(values) == int(lines[0].split(":")[1])
    return joints, values, frame_time


def bvh_positions(joints: list[dict], row: np.ndarray) -> np.ndarray:
    """(J, 3) world joint positions of one MOTION row: each rotation channel applied in the order listed."""
    world_rotations, positions, column = [], [], 0
    for joint in joints:
        rotation, translation = np.eye(3), joint["offset"].copy()
        for channel in joint["channels"]:
            value = row[column]
            column += 1
            axis = "XYZ".index(channel[0])
            if channel.endswith("position"):
                translation[axis] += value
            else:
                rotation = rotation @ Rotation.from_rotvec(np.radians(value) * np.eye(3)[axis]).as_matrix()
        parent = joint["parent"]
        if parent < 0:
            world_rotations.append(rotation)
            positions.append(translation)
        else:
            world_rotations.append(world_rotations[parent] @ rotation)
            positions.append(positions[parent] + world_rotations[parent] @ translation)
    return np.array(positions)


def test_bvh_read_back_gives_the_same_joint_positions(exported, motion):
    joints, values, frame_time = read_bvh(exported[".bvh"].read_text())
    assert sorted(j["name"] for j in joints) == sorted(JOINT_NAMES)
    assert joints[0]["channels"] == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    assert frame_time == pytest.approx(1 / 30) and len(values) == motion.num_frames
    order = [JOINT[j["name"]] for j in joints]
    expected = expected_joints(motion, np.arange(motion.num_frames))[:, order]
    for frame, row in enumerate(values):
        positions = bvh_positions(joints, row) / 100  # centimetres
        error = np.linalg.norm(positions - expected[frame], axis=-1)
        assert error.max() < MILLIMETRE, (frame, joints[error.argmax()]["name"], error.max())


# ----------------------------------------------------------------------------
# .csv (Live Link Face)
# ----------------------------------------------------------------------------
def test_csv_has_the_live_link_face_layout_and_the_motion_weights(exported, motion):
    rows = list(csv.reader(io.StringIO(exported[".csv"].read_text())))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"]
    assert header[-9:] == ["HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                           "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]
    assert header[16:24] == ["JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
                             "MouthPucker", "MouthRight"]  # Live Link Face's order, not ARKit's
    assert {name[0].lower() + name[1:] for name in header[2:54]} == set(ARKIT_BLENDSHAPES)
    assert len(body) == motion.num_frames and all(len(row) == len(header) for row in body)
    assert {row[1] for row in body} == {str(BLENDSHAPE_COUNT)} and BLENDSHAPE_COUNT == 61
    assert [body[0][0], body[29][0], body[30][0], body[44][0]] == ["00:00:00:00.000", "00:00:00:29.000",
                                                                   "00:00:01:00.000", "00:00:01:14.000"]
    values = np.array([row[2:54] for row in body], np.float32)
    for column, name in enumerate(LIVE_LINK_FACE_BLENDSHAPES):
        arkit = ARKIT_BLENDSHAPES.index(name[0].lower() + name[1:])
        np.testing.assert_array_equal(values[:, column], motion.expressions[:, arkit], err_msg=name)


def test_csv_head_and_eye_angles_are_radians_about_smplx_axes(tmp_path):
    motion = Motion.rest(3, expression_space="arkit")
    joints = motion.poses.reshape(3, -1, 3)
    joints[:, JOINT["neck"]] = [0, 0.2, 0]     # yaw split between neck and head: the head's total counts
    joints[:, JOINT["head"]] = [0, 0.3, 0]
    joints[1, JOINT["head"]] = [0.4, 0, 0]     # frame 1: only the neck yaws, the head pitches
    joints[:, JOINT["left_eye"]] = [-0.1, 0, 0]
    rows = list(csv.DictReader(io.StringIO(export_motion(motion, tmp_path / "head.csv").read_text())))
    assert float(rows[0]["HeadYaw"]) == pytest.approx(0.5, abs=1e-6)
    assert float(rows[1]["HeadYaw"]) == pytest.approx(0.2, abs=1e-6)
    assert float(rows[1]["HeadPitch"]) == pytest.approx(0.4, abs=1e-6)
    assert float(rows[0]["HeadRoll"]) == pytest.approx(0, abs=1e-6)
    assert float(rows[2]["LeftEyePitch"]) == pytest.approx(-0.1, abs=1e-6)
    assert float(rows[2]["RightEyeYaw"]) == 0


# ----------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------
def test_cli_exports_a_generated_motion(tmp_path, tiny_checkpoint, speech_like, capsys):
    from asynfusion.pipeline import Pipeline
    from asynfusion.request import Request

    motion, _ = Pipeline(tiny_checkpoint, "fp32").generate(Request(speech_like(1.0)), count_flops=False)
    save_motion(tmp_path / "generated.npz", motion)
    for suffix in EXPORTERS:
        assert main(["export", str(tmp_path / "generated.npz"), "-o", str(tmp_path / f"out{suffix}")]) == 0
    assert capsys.readouterr().out.count("30 frames (1.00 s)") == 3
    assert validate(tmp_path / "out.glb")["issues"]["numErrors"] == 0


@pytest.mark.parametrize("output, motion_kind, message", [
    ("out.fbx", "arkit", "extension"),
    ("out.csv", "flame", "ARKit expression space"),
    ("out.glb", "missing", "not found"),
    ("out.glb", "empty", "no frames"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, output, motion_kind, message):
    motion_path = tmp_path / "in" / "motion.npz"
    if motion_kind != "missing":
        num_frames = 0 if motion_kind == "empty" else 5
        save_motion(motion_path, smooth_motion(num_frames, expression_space="flame" if motion_kind == "flame"
                                               else "arkit") if num_frames else Motion.rest(0))
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    assert main(["export", str(motion_path), "-o", str(out_folder / output)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and message in error, error
    assert list(out_folder.iterdir()) == []  # neither the file nor a temporary one


def test_cli_bad_body_writes_nothing(tmp_path, capsys):
    save_motion(tmp_path / "motion.npz", smooth_motion(5))
    code = main(["export", str(tmp_path / "motion.npz"), "-o", str(tmp_path / "out.glb"),
                 "--body", str(tmp_path / "SMPLX_NEUTRAL.npz")])
    assert code == 2 and "body model file not found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motion.npz"]


# ----------------------------------------------------------------------------
# Blender, a real client
# ----------------------------------------------------------------------------
def test_blender_imports_the_glb_and_the_bvh(exported, motion):
    if not BLENDER_PYTHON.exists():
        pytest.skip(f"Blender's bpy is not installed at {BLENDER_PYTHON.parent.parent}: bash tools/setup.sh --dev")
    frames = [0, 1, 22, motion.num_frames - 1]
    result = subprocess.run([str(BLENDER_PYTHON), str(TOOLS / "blender_readback.py"), str(exported[".glb"]),
                             str(exported[".bvh"]), *map(str, frames)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    readback = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("READBACK "))[9:])
    expected = expected_joints(motion, frames)
    for kind in ("glb", "bvh"):
        positions = np.array([readback[kind]["joints"][name] for name in JOINT_NAMES]).transpose(1, 0, 2)
        error = np.linalg.norm(positions - expected, axis=-1)
        assert error.max() < MILLIMETRE, (kind, error.max())
    assert readback["glb"]["shape_keys"] == ARKIT_BLENDSHAPES
    values = np.array([readback["glb"]["shape_key_values"][name] for name in ARKIT_BLENDSHAPES]).T
    np.testing.assert_allclose(values, motion.expressions[frames, :52], atol=1e-6)
    # the outfit: Blender's materials have the .glb's colours, and the skin takes its colours per vertex
    glb = GlbReader(exported[".glb"])
    expected = {material.name: material.pbrMetallicRoughness.baseColorFactor for material in glb.gltf.materials}
    materials = readback["glb"]["materials"]
    assert sorted(materials) == sorted(expected)
    for name, material in materials.items():
        if name == "skin":
            assert material["base_color_from"] == "color attribute"
        else:
            np.testing.assert_allclose(material["base_color"], expected[name], atol=1e-6)
