"""Render an exported .glb in Blender (Cycles), framed and lit as the app's video frames the avatar.

    tools/blender-venv/bin/python tools/blender_render.py AVATAR.glb OUT.png [--frame 69] [--size 512]

Runs under the `bpy` module (bpy 4.5 LTS from PyPI, in its own virtual environment: `bash tools/setup.sh
--dev` makes it). Blender's own glTF importer reads the file: the materials the avatar wears are the
.glb's (asynfusion/export/gltf.py: skin with its colours per vertex, shirt, trousers, shoes), nothing is
recoloured here. The scene copies the video's (asynfusion/render/scene.py, shaders.py): an orthographic
camera tilted 8 degrees down over the band from 0.30 to 1.08 of the body's height, centred on the root's
path averaged over a second; the floor under frame 0's lowest point; the background and floor colours;
a key, fill and rim light from the shader's directions over an even ambient light. Blender lights in
linear light, the video's shader lights sRGB values as they are, so shading differs a little; the
colours under the same light are the file's. FRAME counts from 0, the first frame of the motion.
"""

import argparse
import math
import sys

import bpy
from mathutils import Vector

VIEW_BOTTOM, VIEW_TOP, TILT_DEGREES = 0.30, 1.08, 8.0  # as asynfusion/render/scene.py
BACKGROUND, FLOOR = (0.93, 0.93, 0.92), (0.78, 0.77, 0.75)  # sRGB, as the video shows them
# (direction towards the light in glTF axes: Y up, the body facing +Z; Blender strength) per light
LIGHTS = [((-0.45, 0.65, 0.75), 2.2), ((0.6, 0.2, 0.7), 0.7), ((0.0, 0.3, -1.0), 0.6)]  # key, fill, rim
AMBIENT = 0.3
FOLLOW_FRAMES = 15  # the video's camera follows the root averaged over a second: half a second each side


def linear(srgb):
    return tuple(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in srgb)


def blender_axes(x: float, y: float, z: float) -> Vector:
    return Vector((x, -z, y))  # glTF's Y up, +Z forward -> Blender's Z up, -Y forward


def import_avatar(path: str):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = 30  # the glTF importer places keys at time x scene fps
    bpy.ops.import_scene.gltf(filepath=path)
    meshes = [obj for obj in bpy.context.scene.objects if obj.type == "MESH"]
    body = max(meshes, key=lambda obj: len(obj.data.vertices))
    for obj in meshes:
        obj.hide_render = obj is not body  # the importer's bone shapes
    armature = next(obj for obj in bpy.context.scene.objects if obj.type == "ARMATURE")
    start = int(min(action.frame_range[0] for action in bpy.data.actions))
    return body, armature, start


def posed_vertices(body, frame: int) -> list[Vector]:
    bpy.context.scene.frame_set(frame)
    evaluated = body.evaluated_get(bpy.context.evaluated_depsgraph_get())
    return [evaluated.matrix_world @ vertex.co for vertex in evaluated.data.vertices]


def root_at(armature, frame: int) -> Vector:
    bpy.context.scene.frame_set(frame)
    return armature.matrix_world @ armature.pose.bones["pelvis"].head


def add_camera(target: Vector, height: float, size: int) -> None:
    tilt = math.radians(TILT_DEGREES)
    data = bpy.data.cameras.new("camera")
    data.type, data.ortho_scale, data.clip_end = "ORTHO", (VIEW_TOP - VIEW_BOTTOM) * height, 100.0
    camera = bpy.data.objects.new("camera", data)
    camera.location = target + 6.0 * Vector((0.0, -math.cos(tilt), math.sin(tilt)))
    camera.rotation_euler = (math.pi / 2 - tilt, 0.0, 0.0)  # looking along +Y, 8 degrees down
    bpy.context.scene.collection.objects.link(camera)
    scene = bpy.context.scene
    scene.camera = camera
    scene.render.resolution_x = scene.render.resolution_y = size


def add_lights_floor_and_background(floor_height: float, centre: Vector) -> None:
    for k, (direction, strength) in enumerate(LIGHTS):
        data = bpy.data.lights.new(f"light{k}", "SUN")
        data.energy, data.angle = strength, math.radians(10)
        light = bpy.data.objects.new(f"light{k}", data)
        light.rotation_euler = blender_axes(*direction).normalized().to_track_quat("Z", "Y").to_euler()
        bpy.context.scene.collection.objects.link(light)
    # the video's floor: 40 m wide, from 2 m in front of the body to 6 m behind it
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(centre.x, centre.y + 2.0, floor_height))
    floor = bpy.context.object
    floor.scale = (40.0, 8.0, 1.0)
    material = bpy.data.materials.new("floor")
    material.use_nodes = True
    principled = material.node_tree.nodes["Principled BSDF"]
    principled.inputs["Base Color"].default_value = (*linear(FLOOR), 1.0)
    principled.inputs["Roughness"].default_value = 1.0
    floor.data.materials.append(material)
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    backdrop, ambient = nodes.new("ShaderNodeBackground"), nodes["Background"]
    backdrop.inputs["Color"].default_value = (*linear(BACKGROUND), 1.0)  # what the camera sees
    ambient.inputs["Color"].default_value = (AMBIENT, AMBIENT, AMBIENT, 1.0)  # what lights the avatar
    mix, path = nodes.new("ShaderNodeMixShader"), nodes.new("ShaderNodeLightPath")
    links.new(path.outputs["Is Camera Ray"], mix.inputs["Fac"])
    links.new(ambient.outputs["Background"], mix.inputs[1])
    links.new(backdrop.outputs["Background"], mix.inputs[2])
    links.new(mix.outputs["Shader"], nodes["World Output"].inputs["Surface"])
    bpy.context.scene.world = world


def render(out: str, samples: int) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", samples
    scene.cycles.use_denoising = True
    scene.view_settings.view_transform, scene.view_settings.look = "Standard", "None"
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGB"
    scene.render.filepath = out
    bpy.ops.render.render(write_still=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("glb")
    parser.add_argument("out")
    parser.add_argument("--frame", type=int, default=0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])

    body, armature, start = import_avatar(args.glb)
    rest = [body.matrix_world @ vertex.co for vertex in body.data.vertices]
    height = max(v.z for v in rest) - min(v.z for v in rest)
    floor_height = min(v.z for v in posed_vertices(body, start))
    last = int(max(action.frame_range[1] for action in bpy.data.actions))
    frames = range(max(start, start + args.frame - FOLLOW_FRAMES), min(last, start + args.frame + FOLLOW_FRAMES) + 1)
    roots = [root_at(armature, frame) for frame in frames]
    centre = sum(roots, Vector()) / len(roots)
    bpy.context.scene.frame_set(start + args.frame)
    target = Vector((centre.x, centre.y, floor_height + (VIEW_TOP + VIEW_BOTTOM) / 2 * height))
    add_camera(target, height, args.size)
    add_lights_floor_and_background(floor_height, centre)
    render(args.out, args.samples)
    print(f"{args.out}: frame {args.frame} of {args.glb}, {args.size} px, Cycles {args.samples} samples")


if __name__ == "__main__":
    main()
