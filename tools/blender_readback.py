"""Read an exported .glb and .bvh back with Blender's own importers; print joint positions and shape keys as JSON.

    tools/blender-venv/bin/python tools/blender_readback.py FILE.glb FILE.bvh FRAME [FRAME ...]

Runs under the `bpy` module (bpy 4.5 LTS from PyPI, in its own virtual environment: it needs numpy < 2,
the project's runs on numpy 2; `bash tools/setup.sh --dev` makes it). FRAME counts from 0, the first frame
of the motion. Positions are in metres, in glTF / SMPL-X axes (Y up): Blender's Z-up import is turned back.
Prints {"glb": {"joints": {name: [[x, y, z] per frame]}, "shape_keys": [names],
"shape_key_values": {name: [value per frame]}, "materials": {name: {"base_color": [r, g, b, a]} or
{"base_color_from": "color attribute"}}}, "bvh": {"joints": ...}}.
"""

import json
import sys

import bpy


def clear_scene(fps: int = 30) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = fps  # the glTF importer places keys at time x scene fps


def armature() -> bpy.types.Object:
    return next(obj for obj in bpy.context.scene.objects if obj.type == "ARMATURE")


def joint_positions(frames: list[int], first_frame: int) -> dict[str, list[list[float]]]:
    """World head position of every pose bone at each motion frame (Blender frame = first_frame + frame)."""
    rig = armature()
    positions = {bone.name: [] for bone in rig.pose.bones}
    for frame in frames:
        bpy.context.scene.frame_set(first_frame + frame)
        for bone in rig.pose.bones:
            x, y, z = rig.matrix_world @ bone.head
            positions[bone.name].append([x, z, -y])  # Blender Z up -> Y up
    return positions


def read_glb(path: str, frames: list[int]) -> dict:
    clear_scene()
    bpy.ops.import_scene.gltf(filepath=path)
    mesh = next(obj for obj in bpy.context.scene.objects if obj.type == "MESH")
    keys = [block for block in mesh.data.shape_keys.key_blocks if block.name != "Basis"]
    start = int(min(action.frame_range[0] for action in bpy.data.actions))
    values = {key.name: [] for key in keys}
    for frame in frames:
        bpy.context.scene.frame_set(start + frame)
        for key in keys:
            values[key.name].append(key.value)
    return {"first_frame": start, "joints": joint_positions(frames, start),
            "shape_keys": [key.name for key in keys], "shape_key_values": values,
            "materials": {material.name: material_colour(material) for material in mesh.data.materials}}


def material_colour(material: bpy.types.Material) -> dict:
    """What gives the material's base colour: its own value, or the mesh's colour attribute (COLOR_0)."""
    base = next(node for node in material.node_tree.nodes if node.type == "BSDF_PRINCIPLED").inputs["Base Color"]
    if base.is_linked and base.links[0].from_node.type == "VERTEX_COLOR":
        return {"base_color_from": "color attribute"}
    return {"base_color": list(base.default_value)}


def read_bvh(path: str, frames: list[int]) -> dict:
    clear_scene()
    bpy.ops.import_anim.bvh(filepath=path, global_scale=0.01, frame_start=1, rotate_mode="NATIVE")
    return {"joints": joint_positions(frames, 1)}


def main() -> None:
    glb, bvh, *frames = sys.argv[sys.argv.index("--") + 1 if "--" in sys.argv else 1:]
    frames = [int(f) for f in frames]
    print("READBACK " + json.dumps({"glb": read_glb(glb, frames), "bvh": read_bvh(bvh, frames)}))


if __name__ == "__main__":
    main()
