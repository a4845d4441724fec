"""Motion -> mp4: pyrender offscreen (EGL or OSMesa), frames piped to ffmpeg, the speech muxed in.

One scene holds every avatar of a side-by-side comparison, so N avatars cost one render pass,
not N. The face close-up is in that same pass: a scaled copy of each head, in front of a card in
the tile's corner, seen by the same orthographic camera. Each frame only re-uploads vertex
positions and normals into the meshes' existing GPU buffers.

Threads: skinning and normals (torch, one thread) run in one, OpenGL in the main thread (llvmpipe
adds its own rasteriser threads), and the ffmpeg pipe in a third, so the two cores stay busy.
"""

import contextlib
import ctypes
import ctypes.util
import itertools
import logging
import math
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .motion import JOINT, Motion

log = logging.getLogger(__name__)

TILT_DEGREES = 8.0        # the camera looks slightly down, so the floor shows behind the body
VIEW_BOTTOM, VIEW_TOP = 0.30, 1.08  # the framed band, as fractions of the body's height: hands to above the head
INSET_FRACTION = 0.40     # face close-up card: this fraction of the tile's side
BACKGROUND = (0.93, 0.93, 0.92)
FLOOR_COLOR = (0.78, 0.77, 0.75)
CARD_COLOR, CARD_BORDER = (0.86, 0.89, 0.92), (0.45, 0.48, 0.52)
SKIN = (214, 172, 150)
SCLERA, IRIS, PUPIL = (240, 238, 232), (70, 48, 32), (12, 10, 10)
# Clothes: straight cuts through the rest (T-pose) mesh placed from its joints, so any SMPL-X-format
# body gets a short-sleeved shirt, trousers and shoes instead of a bare mesh. Each vertex carries its
# signed distances to the cuts (texture-coordinate slots); the fragment shader picks the cloth, so
# the seams are straight lines rather than the vertex staircase per-vertex colours would give.
SHIRT, TROUSERS, SHOES = (0.36, 0.43, 0.54), (0.23, 0.24, 0.27), (0.16, 0.14, 0.13)
QUEUE_DEPTH = 8
ENCODER_TIMEOUT = 60.0  # seconds ffmpeg may go without taking a frame (or finishing) before it counts as stalled
ENCODER = ["-c:v", "libx264", "-preset", "superfast", "-crf", "20", "-pix_fmt", "yuv420p"]

# Lighting lives in the shader: a soft studio rig (hemisphere ambient, key, fill, rim) in world
# space. pyrender's own PBR shader costs 5x more per pixel on a software rasteriser (llvmpipe).
VERTEX_SHADER = """#version 330 core
layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
#ifdef TEXCOORD_0_LOC
layout(location = TEXCOORD_0_LOC) in vec2 texcoord_0;
#endif
#ifdef TEXCOORD_1_LOC
layout(location = TEXCOORD_1_LOC) in vec2 texcoord_1;
#endif
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;
uniform mat4 M;
uniform mat4 V;
uniform mat4 P;
out vec3 frag_normal;
out vec4 frag_color;
#ifdef TEXCOORD_1_LOC
out vec4 cuts;
#else
#ifdef TEXCOORD_0_LOC
flat out vec2 clip;
#endif
#endif
void main() {
#ifdef TEXCOORD_1_LOC
    cuts = vec4(texcoord_0, texcoord_1);  // a body: its outfit cuts
#else
#ifdef TEXCOORD_0_LOC
    clip = texcoord_0;  // a close-up head: the lower-left pixel of its card
#endif
#endif
    // matrix-vector products only: llvmpipe runs the vertex shader on one thread, and P * V * M * inst_m
    // as written costs three 4x4 matrix products per vertex
    gl_Position = P * (V * (M * (inst_m * vec4(position, 1.0))));
#ifdef NORMAL_LOC
    frag_normal = mat3(M) * (mat3(inst_m) * normal);
#else
    frag_normal = vec3(0.0, 1.0, 0.0);
#endif
#ifdef COLOR_0_LOC
    frag_color = color_0;
#else
    frag_color = vec4(1.0);
#endif
}
"""
FRAGMENT_SHADER = """#version 330 core
struct Material { vec4 base_color_factor; vec3 emissive_factor; };
uniform Material material;
in vec3 frag_normal;
in vec4 frag_color;
#ifdef TEXCOORD_1_LOC
in vec4 cuts;  // signed distances: below the neckline, above the waist, inside the sleeves, above the shoes
#else
#ifdef TEXCOORD_0_LOC
flat in vec2 clip;
#endif
#endif
out vec4 color;
void main() {
#ifndef TEXCOORD_1_LOC
#ifdef TEXCOORD_0_LOC
    // only the close-up head's program can discard: a shader that may discard cannot depth-test early
    if (any(lessThan(gl_FragCoord.xy, clip)) || any(greaterThan(gl_FragCoord.xy, clip + vec2(CARD_PIXELS)))) discard;
#endif
#endif
    vec3 n = normalize(frag_normal);
    if (!gl_FrontFacing) n = -n;
    vec3 albedo = frag_color.rgb * material.base_color_factor.rgb;
#ifdef TEXCOORD_1_LOC
    if (cuts.w < 0.0) albedo = vec3(SHOES_RGB);
    else if (cuts.y < 0.0) albedo = vec3(TROUSERS_RGB);
    else if (cuts.x > 0.0 && cuts.z > 0.0) albedo = vec3(SHIRT_RGB);
#endif
    float hemisphere = mix(0.42, 0.62, 0.5 + 0.5 * n.y);
    float key = max(dot(n, normalize(vec3(-0.45, 0.65, 0.75))), 0.0) * 0.55;
    float fill = max(dot(n, normalize(vec3(0.6, 0.2, 0.7))), 0.0) * 0.22;
    float rim = pow(max(dot(n, normalize(vec3(0.0, 0.3, -1.0))), 0.0), 2.0) * 0.18;
    vec3 half_vector = normalize(normalize(vec3(-0.45, 0.65, 0.75)) + vec3(0.0, 0.0, 1.0));
    float specular = pow(max(dot(n, half_vector), 0.0), 24.0) * 0.06;
    vec3 lit = albedo * (hemisphere + key + fill + rim) + specular;
    color = vec4(material.emissive_factor.r > 0.5 ? albedo : lit, 1.0);  // emissive marks flat props
}
"""
for _name, _rgb in (("SHIRT_RGB", SHIRT), ("TROUSERS_RGB", TROUSERS), ("SHOES_RGB", SHOES)):
    FRAGMENT_SHADER = FRAGMENT_SHADER.replace(_name, ", ".join(f"{c:.3f}" for c in _rgb))


# ----------------------------------------------------------------------------
# OpenGL platform: chosen before pyrender / PyOpenGL is first imported
# ----------------------------------------------------------------------------
def _egl_has_device() -> bool:
    """EGL loads and lists at least one device (Mesa lists its software rasteriser)."""
    name = ctypes.util.find_library("EGL") or "libEGL.so.1"
    try:
        egl = ctypes.CDLL(name)
    except OSError:
        return False
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    address = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    if not address:
        return False
    query = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))(address)
    count = ctypes.c_int(0)
    return bool(query(0, None, ctypes.byref(count))) and count.value > 0


def _osmesa_loads() -> bool:
    name = ctypes.util.find_library("OSMesa")
    try:
        return name is not None and ctypes.CDLL(name) is not None
    except OSError:
        return False


def choose_gl_platform() -> str:
    """Set PYOPENGL_PLATFORM (unless the user did): EGL, else OSMesa, else a one-line InputError."""
    if os.environ.get("PYOPENGL_PLATFORM"):
        return os.environ["PYOPENGL_PLATFORM"]
    if _egl_has_device():
        platform = "egl"
    elif _osmesa_loads():
        platform = "osmesa"
    else:
        raise InputError("offscreen rendering needs OpenGL through EGL or OSMesa; neither libEGL nor libOSMesa "
                         "works here (Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri, or libosmesa6)")
    os.environ["PYOPENGL_PLATFORM"] = platform
    return platform


# ----------------------------------------------------------------------------
# The scene
# ----------------------------------------------------------------------------
@dataclass
class _Avatar:
    """One motion on one body in its tile, and the GPU buffers its frames are written into."""

    center_x: float
    head_ids: np.ndarray      # vertices copied into the face close-up
    anchor_ids: np.ndarray    # vertices rigid with the skull: the close-up follows their mean
    body_buffer: np.ndarray   # (V, 14) position, normal, outfit cuts, RGBA: pyrender's interleaved layout
    head_buffer: np.ndarray
    body_primitive: object = None
    head_primitive: object = None
    inset_center: np.ndarray | None = None  # world point where the close-up head's anchor sits
    inset_scale: float = 1.0


def _head_selection(body) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Vertices copied into the close-up (head and neck), those rigid with the skull, and the rest-pose
    chin and crown heights."""
    weights = body.lbs_weights.detach().numpy()
    template = body.v_template.detach().numpy()
    joints = body.J_regressor.detach().numpy() @ template
    head = weights[:, [JOINT[n] for n in ("head", "jaw", "left_eye", "right_eye")]].sum(1) > 0.5
    chin, crown = (template[head, 1].min(), template[head, 1].max()) if head.any() else (0.0, 0.0)
    # The neck down to past the card's lower edge (the chin sits at 12% of the card, see _add_avatar),
    # narrower than the shoulders; the shader clips whatever sticks out of the card.
    half_width = 0.5 * abs(joints[JOINT["left_shoulder"], 0] - joints[JOINT["right_shoulder"], 0]) / 2
    neck = ((template[:, 1] > chin - 0.3 * (crown - chin))
            & (np.abs(template[:, 0] - joints[JOINT["neck"], 0]) < half_width))
    head_ids = np.where(head | neck)[0]
    anchor_ids = np.where(weights[:, JOINT["head"]] > 0.99)[0]
    if head.sum() < 3 or len(anchor_ids) == 0:  # a body without a usable head: no close-up
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0, 0.0
    return head_ids, anchor_ids, float(chin), float(crown)


def _vertex_colors(body) -> np.ndarray:
    """(V, 3) uint8: the body's own colours (the stand-in's tongue) or skin, with eyes looking forward."""
    template = body.v_template.detach().numpy()
    colors = body.vertex_colors.copy() if body.vertex_colors is not None else np.tile(SKIN, (len(template), 1))
    dominant = body.lbs_weights.detach().numpy().argmax(1)
    eye_centres = body.J_regressor.detach().numpy() @ template
    for eye in (JOINT["left_eye"], JOINT["right_eye"]):
        ids = np.where(dominant == eye)[0]
        direction = template[ids] - eye_centres[eye]
        forward = direction[:, 2] / np.maximum(np.linalg.norm(direction, axis=1), 1e-9)  # cosine to +z
        colors[ids] = np.where(forward[:, None] > 0.97, PUPIL, np.where(forward[:, None] > 0.86, IRIS, SCLERA))
    return colors.astype(np.uint8)


def _outfit_cuts(body) -> np.ndarray:
    """(V, 4) signed distances (metres) of the rest mesh to the outfit's cuts, in the shader's order."""
    template = body.v_template.detach().numpy()
    j = {name: (body.J_regressor.detach().numpy() @ template)[JOINT[name]]
         for name in ("pelvis", "spine1", "neck", "left_shoulder", "left_elbow", "left_knee", "left_ankle")}
    sleeve = j["left_shoulder"][0] + 0.45 * (j["left_elbow"][0] - j["left_shoulder"][0])
    waist = j["pelvis"][1] + 0.5 * (j["spine1"][1] - j["pelvis"][1])
    neckline = j["neck"][1] - 0.25 * (j["neck"][1] - j["left_shoulder"][1])
    shoe_top = j["left_ankle"][1] + 0.1 * (j["left_knee"][1] - j["left_ankle"][1])
    x, y = np.abs(template[:, 0] - j["pelvis"][0]), template[:, 1]
    return np.stack([neckline - y, y - waist, sleeve - x, y - shoe_top], 1).astype(np.float32)


def _submesh_faces(faces: np.ndarray, kept: np.ndarray, num_vertices: int) -> np.ndarray:
    """Faces whose three corners are all kept, renumbered into the kept subset."""
    new_index = np.full(num_vertices, -1)
    new_index[kept] = np.arange(len(kept))
    inside = (new_index[faces] >= 0).all(1)
    return new_index[faces[inside]]


def _primitive(positions, faces, colors, extra, two_sided: bool):
    """A pyrender primitive whose buffer is rewritten every frame: per-vertex colours, plus the body's
    (V, 4) outfit cuts or a close-up head's (V, 2) card origin in the texture-coordinate slots. One-sided
    where the mesh allows it (_outward_faces): its back faces are culled before they cost any pixels."""
    import pyrender

    material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0), doubleSided=two_sided)
    return pyrender.Primitive(positions=positions, normals=np.tile([0.0, 0.0, 1.0], (len(positions), 1)),
                              texcoord_0=extra[:, :2], texcoord_1=extra[:, 2:4] if extra.shape[1] == 4 else None,
                              color_0=colors, indices=faces, material=material)


def _outward_faces(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, bool]:
    """(faces, cullable): a closed, consistently wound mesh (every edge met once each way, as the stand-in
    and SMPL-X are) comes back wound counter-clockwise seen from outside, reversed if its signed volume is
    negative, and can have its back faces culled; any other mesh comes back as it is, to be drawn two-sided."""
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    count = int(faces.max()) + 1
    if not np.isin(edges[:, 1] * count + edges[:, 0], edges[:, 0] * count + edges[:, 1]).all():
        return faces, False
    corners = vertices[faces]                                                          # (F, 3, 3)
    volume = np.einsum("fi,fi->", corners[:, 0], np.cross(corners[:, 1], corners[:, 2]))
    return (faces if volume >= 0 else np.ascontiguousarray(faces[:, ::-1])), True


def _quad(corners: np.ndarray, color, unlit: bool = False) -> object:
    """A two-triangle mesh (floor, close-up card); `unlit` ones show exactly `color`."""
    import pyrender

    normal = np.cross(corners[1] - corners[0], corners[2] - corners[0])
    primitive = pyrender.Primitive(
        positions=corners, normals=np.tile(normal / np.linalg.norm(normal), (4, 1)),
        indices=np.array([[0, 1, 2], [0, 2, 3]]),
        material=pyrender.MetallicRoughnessMaterial(baseColorFactor=(*color, 1.0), doubleSided=True,
                                                    emissiveFactor=(1.0, 1.0, 1.0) if unlit else (0.0, 0.0, 0.0)))
    return pyrender.Mesh([primitive])


class _Stage:
    """pyrender scene + offscreen renderer for N avatars side by side, reused for every frame."""

    def __init__(self, bodies: list, size: int, multisample: bool = False):
        choose_gl_platform()
        import pyrender
        import pyrender.renderer
        from pyrender.shader_program import ShaderProgramCache

        self.size, self.count = size, len(bodies)
        height = max(float(np.ptp(b.v_template.detach().numpy()[:, 1])) for b in bodies)
        self.tile = (VIEW_TOP - VIEW_BOTTOM) * height                       # world metres per tile side
        tilt = math.radians(TILT_DEGREES)
        # Camera frame: x right, y up, z backwards (OpenGL), tilted down about x.
        self.camera_rotation = np.array([[1, 0, 0], [0, math.cos(tilt), math.sin(tilt)],
                                         [0, -math.sin(tilt), math.cos(tilt)]])  # columns: x, y, z axes
        target = np.array([0.0, (VIEW_TOP + VIEW_BOTTOM) / 2 * height, 0.0])
        distance = 6.0
        self.camera_position = target + distance * self.camera_rotation[:, 2]
        camera_pose = np.eye(4)
        camera_pose[:3, :3], camera_pose[:3, 3] = self.camera_rotation, self.camera_position

        self.scene = pyrender.Scene(bg_color=(*BACKGROUND, 1.0), ambient_light=(0.0, 0.0, 0.0))
        self.scene.add(pyrender.OrthographicCamera(xmag=self.tile * self.count / 2, ymag=self.tile / 2,
                                                   znear=0.5, zfar=30.0), pose=camera_pose)
        half = self.tile * self.count / 2 + 2
        self.scene.add(_quad(np.array([[-half, 0, 2.0], [half, 0, 2.0], [half, 0, -6.0], [-half, 0, -6.0]]),
                             FLOOR_COLOR))
        self.avatars = [self._add_avatar(body, (i - (self.count - 1) / 2) * self.tile) for i, body in enumerate(bodies)]

        self.renderer = pyrender.OffscreenRenderer(size * self.count, size)
        self.renderer._renderer._program_cache = ShaderProgramCache(shader_dir=self._write_shaders())
        # The first render creates the framebuffers and uploads every mesh; afterwards only vertex data
        # changes. pyrender always asks for 4x MSAA, which costs llvmpipe 2.4x the frame time (49 vs
        # 119 fps at 512 px): videos render without it, stills with it.
        allocate = pyrender.renderer.glRenderbufferStorageMultisample
        if not multisample:
            pyrender.renderer.glRenderbufferStorageMultisample = (
                lambda target, samples, fmt, width, height: allocate(target, 0, fmt, width, height))
        try:
            self.renderer.render(self.scene)
        finally:
            pyrender.renderer.glRenderbufferStorageMultisample = allocate
        self.multisample = multisample
        self.renderer._renderer._read_main_framebuffer = self._read_color

    def _write_shaders(self) -> str:
        self._shader_dir = tempfile.TemporaryDirectory(prefix="asynfusion-shaders-")
        fragment_shader = FRAGMENT_SHADER.replace("CARD_PIXELS", f"{INSET_FRACTION * self.size:.2f}")
        for name, text in (("mesh.vert", VERTEX_SHADER), ("mesh.frag", fragment_shader)):
            Path(self._shader_dir.name, name).write_text(text)
        return self._shader_dir.name

    def _camera_point(self, u: float, v: float, depth: float) -> np.ndarray:
        """World point at image-plane offset (u, v) metres from the view centre, `depth` from the camera."""
        return self.camera_position + self.camera_rotation @ np.array([u, v, -depth])

    def _camera_rect(self, left: float, bottom: float, right: float, top: float, depth: float) -> np.ndarray:
        """Corners of an image-aligned rectangle at `depth` from the camera."""
        return np.array([self._camera_point(x, y, depth) for x, y in ((left, bottom), (right, bottom),
                                                                          (right, top), (left, top))])

    def _add_avatar(self, body, center_x: float) -> _Avatar:
        import pyrender

        template = body.v_template.detach().numpy().astype(np.float32)
        faces, cullable = _outward_faces(template, np.asarray(body.faces, np.int64))
        colors = _vertex_colors(body)
        rgba = np.concatenate([colors / 255.0, np.ones((len(template), 1))], 1).astype(np.float32)
        cuts = _outfit_cuts(body)
        body_primitive = _primitive(template, faces, rgba, cuts, two_sided=not cullable)
        self.scene.add(pyrender.Mesh([body_primitive]))
        head_ids, anchor_ids, chin, crown = _head_selection(body)
        avatar = _Avatar(center_x, head_ids, anchor_ids,
                         np.concatenate([template, np.zeros_like(template), cuts, rgba], 1), None, body_primitive)
        if len(head_ids):
            # The close-up: a card in the tile's top-right corner between the camera and the body, and a
            # scaled copy of the head in front of it, clipped to the card by the fragment shader.
            card = INSET_FRACTION * self.tile
            margin, border = 0.025 * self.tile, 0.012 * self.tile
            u, v = center_x + self.tile / 2 - margin - card / 2, self.tile / 2 - margin - card / 2
            avatar.inset_scale = 0.84 * card / (crown - chin)  # chin at 12% of the card, crown at 96%
            anchor_y = template[anchor_ids, 1].mean()
            avatar.inset_center = self._camera_point(
                u, v - 0.38 * card + (anchor_y - chin) * avatar.inset_scale, 2.0)
            self.scene.add(_quad(self._camera_rect(u - card / 2, v - card / 2, u + card / 2, v + card / 2, 2.6),
                                 CARD_COLOR, unlit=True))
            self.scene.add(_quad(self._camera_rect(u - card / 2 - border, v - card / 2 - border,
                                                   u + card / 2 + border, v + card / 2 + border, 2.7),
                                 CARD_BORDER, unlit=True))
            pixels_per_metre = self.size / self.tile
            card_origin = np.array([(u - card / 2) * pixels_per_metre + self.size * self.count / 2,
                                    (v - card / 2) * pixels_per_metre + self.size / 2], np.float32)
            head_faces = _submesh_faces(faces, head_ids, len(template))
            origins = np.tile(card_origin, (len(head_ids), 1))
            avatar.head_primitive = _primitive(template[head_ids], head_faces, rgba[head_ids], origins,
                                               two_sided=not cullable)
            avatar.head_buffer = np.concatenate([template[head_ids], np.zeros_like(template[head_ids]), origins,
                                                 rgba[head_ids]], 1)
            self.scene.add(pyrender.Mesh([avatar.head_primitive]))
        return avatar

    def _read_color(self, scene, flags):
        """(H, W, 4) BGRA, top row first: pyrender's framebuffer read minus the depth buffer, which we never
        use (a third of a frame), and in the rasteriser's own byte order (RGB readback costs it a conversion).
        Without multisampling the frame is read where it was drawn, without a blit first."""
        from OpenGL import GL

        renderer = self.renderer._renderer
        width, height = renderer._main_fb_dims
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, renderer._main_fb_ms)
        if self.multisample:
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, renderer._main_fb)
            GL.glBlitFramebuffer(0, 0, width, height, 0, 0, width, height, GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, renderer._main_fb)
        pixels = GL.glReadPixels(0, 0, width, height, GL.GL_BGRA, GL.GL_UNSIGNED_BYTE)
        return np.frombuffer(pixels, np.uint8).reshape(height, width, 4)[::-1]

    def place(self, avatar: _Avatar, vertices: np.ndarray, normals: np.ndarray) -> None:
        """Fill one avatar's interleaved buffers for a frame (any thread; no OpenGL)."""
        avatar.body_buffer[:, 0] = vertices[:, 0] + avatar.center_x
        avatar.body_buffer[:, 1:3] = vertices[:, 1:3]
        avatar.body_buffer[:, 3:6] = normals
        if avatar.head_primitive is not None:
            anchor = vertices[avatar.anchor_ids].mean(0)
            avatar.head_buffer[:, :3] = (vertices[avatar.head_ids] - anchor) * avatar.inset_scale + avatar.inset_center
            avatar.head_buffer[:, 3:6] = normals[avatar.head_ids]

    def render(self, buffers: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """Upload each avatar's (body, head) buffers into the existing GPU buffers and render one frame."""
        from OpenGL import GL

        self.renderer._platform.make_current()
        for avatar, (body_buffer, head_buffer) in zip(self.avatars, buffers, strict=True):
            for primitive, data in ((avatar.body_primitive, body_buffer), (avatar.head_primitive, head_buffer)):
                if primitive is not None:
                    GL.glBindBuffer(GL.GL_ARRAY_BUFFER, primitive._buffers[0])
                    GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, data.nbytes, data)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
        return self.renderer.render(self.scene)

    def close(self) -> None:
        self.renderer.delete()
        self._shader_dir.cleanup()


# ----------------------------------------------------------------------------
# Labels: drawn once with PIL, blended into each frame where they sit
# ----------------------------------------------------------------------------
def _label_overlays(labels: list[str], size: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(top, left, bgr, alpha) patches: one text label at the bottom-left of each tile."""
    import pyrender
    from PIL import Image, ImageDraw, ImageFont

    font_path = Path(pyrender.__file__).parent / "fonts" / "OpenSans-Semibold.ttf"
    font = ImageFont.truetype(str(font_path), max(10, size // 28))
    overlays = []
    for i, text in enumerate(labels):
        if not text:
            continue
        box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
        pad = max(3, size // 90)
        width = min(box[2] + 2 * pad, size - 2 * pad)
        height = box[3] + 2 * pad
        patch = Image.new("RGBA", (width, height), (255, 255, 255, 200))
        ImageDraw.Draw(patch).text((pad, pad - box[1] // 2), text, font=font, fill=(30, 32, 36, 255))
        patch = np.asarray(patch).astype(np.float32)
        overlays.append((size - height - pad, i * size + pad, patch[..., 2::-1], patch[..., 3:] / 255.0))
    return overlays


def _compose(frame: np.ndarray, overlays, size: int, count: int) -> np.ndarray:
    """The rendered BGRA frame with the labels and dividers drawn in (a new array)."""
    frame = np.array(frame)  # writable copy
    for top, left, bgr, alpha in overlays:
        region = frame[top:top + bgr.shape[0], left:left + bgr.shape[1], :3]
        region[:] = (region * (1 - alpha) + bgr * alpha).astype(np.uint8)
    for i in range(1, count):  # a thin divider between tiles
        frame[:, i * size - 1:i * size + 1] = 150
    return frame


# ----------------------------------------------------------------------------
# Frame production (skinning thread) and encoding (ffmpeg)
# ----------------------------------------------------------------------------
def _produce(stage: _Stage, bodies, motions, num_frames: int, out: queue.Queue, stop: threading.Event) -> None:
    """Skin every motion, compute normals, fill per-frame buffers; holds the last pose past the motion's end.

    Skinning runs on one torch thread while this runs: the other core is the rasteriser's and the
    encoder's, and a second torch thread spinning for work costs them more than it saves here (skinning
    took 6.5 ms of CPU a frame on two threads, 2.9 ms on one). torch's thread count is process-wide, so
    it is put back afterwards; the app and the CLI never sample while they render.
    """
    import torch

    from .body import iter_body_vertices

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generators = [iter_body_vertices(body, motion) for body, motion in zip(bodies, motions, strict=True)]
        last = [None] * len(motions)
        frame = 0
        while frame < num_frames and not stop.is_set():
            batch = []
            for i, generator in enumerate(generators):
                vertices, normals = next(generator, last[i])  # a motion shorter than the audio holds its pose
                last[i] = (vertices[-1:], normals[-1:])
                batch.append((vertices, normals))
            length = max(len(v) for v, _ in batch)
            for k in range(min(length, num_frames - frame)):
                buffers = []
                for avatar, (vertices, normals) in zip(stage.avatars, batch, strict=True):
                    index = min(k, len(vertices) - 1)
                    stage.place(avatar, vertices[index], normals[index])
                    head = None if avatar.head_buffer is None else avatar.head_buffer.copy()
                    buffers.append((avatar.body_buffer.copy(), head))
                out.put(buffers)
                frame += 1
        out.put(None)
    except BaseException as error:  # handed to the main thread, which re-raises it
        out.put(error)
    finally:
        torch.set_num_threads(threads)


def _ffmpeg_command(width: int, height: int, fps: int, audio_path: str | None, out_path: str) -> list[str]:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "bgra", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
    if audio_path:
        command += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
    return command + ENCODER + ["-r", str(fps), "-movflags", "+faststart", "-f", "mp4", out_path]


def render_video(motions: list[Motion], audio_path: str | None, out_path, labels: list[str] | None = None,
                 body_path=None, size: int = 512, progress: Callable[[int, int], None] | None = None) -> dict:
    """Render one or more motions of the same speech to an H.264 + AAC mp4.

    One motion = one avatar; several = side by side in one video (each `size` x `size`), each with
    its label (e.g. "async LCM 4/8 steps, 0.21 s"). The video lasts as long as the audio (whole
    frames, rounded up; a motion shorter than the audio holds its last pose). `body_path`: an
    SMPL-X model file, else $ASYNFUSION_BODY, else the shipped stand-in. `progress(done, total)`
    is called per frame; without it a tqdm bar shows on a terminal. Nothing is left at `out_path`
    if rendering fails. Returns {"frames", "seconds", "fps"} of the rendering itself (wall time,
    setup included), the video's {"video_seconds", "video_fps"} and "notes": what of the motions this
    body cannot show (FLAME expressions on the stand-in's ARKit face: jaw only; SMPL-X betas on the
    stand-in: ignored), also logged, with "(jaw-only face)" added to such a motion's label.
    """
    from .body import load_body

    if not motions:
        raise InputError("nothing to render: no motion given")
    if labels is not None and len(labels) != len(motions):
        raise InputError(f"{len(labels)} labels for {len(motions)} motions")
    fps = motions[0].fps
    if any(m.fps != fps for m in motions):
        raise InputError("side-by-side motions must share one frame rate")
    if size < 64 or size % 2:
        raise InputError(f"video size must be an even number of pixels >= 64, got {size}")
    out_path = Path(out_path)
    if audio_path is not None:
        from .audio import audio_seconds

        num_frames = max(1, math.ceil(audio_seconds(audio_path) * fps - 1e-6))
    else:
        num_frames = max(m.num_frames for m in motions)
    if min(m.num_frames for m in motions) == 0:
        raise InputError("cannot render a motion with no frames")
    started = time.perf_counter()
    body = load_body(body_path)
    bodies = [body] * len(motions)
    labels, notes = _fit_notes(body, motions, labels or [""] * len(motions))
    stage = _Stage(bodies, size)
    overlays = _label_overlays(labels, size)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(suffix=".mp4", prefix=".tmp-render-", dir=out_path.parent)
    os.close(fd)
    frames_queue: queue.Queue = queue.Queue(QUEUE_DEPTH)
    pixels_queue: queue.Queue = queue.Queue(QUEUE_DEPTH)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(stage, bodies, motions, num_frames, frames_queue, stop),
                                daemon=True)
    encoder_log = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg can never block on a full stderr
    encoder = writer = None
    bar = None
    if progress is None:
        from tqdm import tqdm

        bar = tqdm(total=num_frames, unit="frame", desc="render", leave=False, disable=None)
    try:
        encoder = subprocess.Popen(_ffmpeg_command(size * len(motions), size, fps, audio_path, temp_path),
                                   stdin=subprocess.PIPE, stderr=encoder_log)
        writer = threading.Thread(target=_write_frames, args=(encoder, pixels_queue), daemon=True)
        producer.start()
        writer.start()
        for done in range(1, num_frames + 1):
            buffers = frames_queue.get()
            if isinstance(buffers, BaseException):
                raise buffers
            frame = _compose(stage.render(buffers), overlays, size, len(motions))
            try:
                pixels_queue.put(frame.tobytes(), timeout=ENCODER_TIMEOUT)
            except queue.Full:
                raise InputError(f"ffmpeg stopped taking frames for {ENCODER_TIMEOUT:.0f} s; "
                                 "the video was not written") from None
            if progress is not None:
                progress(done, num_frames)
            elif bar is not None:
                bar.update()
        pixels_queue.put(None)
        writer.join(ENCODER_TIMEOUT)
        try:
            status = encoder.wait(ENCODER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise InputError(f"ffmpeg did not finish the video within {ENCODER_TIMEOUT:.0f} s of the last "
                             "frame; the video was not written") from None
        if status != 0:
            encoder_log.seek(0)
            lines = encoder_log.read().decode(errors="replace").strip().splitlines() or ["no message"]
            raise InputError(f"ffmpeg could not write the video: {lines[-1]}")
        os.replace(temp_path, out_path)
    except BaseException:
        if encoder is not None:
            encoder.kill()  # the writer's next write fails and it exits; a None wakes it if it is idle
            encoder.wait()
        with contextlib.suppress(queue.Full):
            pixels_queue.put_nowait(None)
        Path(temp_path).unlink(missing_ok=True)
        raise
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                frames_queue.get_nowait()
            except queue.Empty:
                producer.join(0.05)
        if bar is not None:
            bar.close()
        encoder_log.close()
        stage.close()
    wall = time.perf_counter() - started
    return {"frames": num_frames, "seconds": wall, "fps": num_frames / wall,
            "video_seconds": num_frames / fps, "video_fps": fps, "notes": notes}


def _fit_notes(body, motions: list[Motion], labels: list[str]) -> tuple[list[str], list[str]]:
    """What of each motion this body cannot show (logged, and "jaw-only face" added to the label)."""
    labels, notes = list(labels), []
    for i, motion in enumerate(motions):
        name = labels[i] or f"motion {i + 1}"
        if motion.expression_space != body.expression_space and motion.expressions.any():
            notes.append(f"{name}: {motion.expression_space.upper()} expressions do not fit this body's "
                         f"{body.expression_space.upper()} face, so the face moves by the jaw only"
                         + (" (pass --body SMPLX_NEUTRAL.npz for the whole face)" if not body.smplx_betas else ""))
            labels[i] = f"{labels[i]}  (jaw-only face)".strip()
        if not body.smplx_betas and motion.betas.any():
            notes.append(f"{name}: its SMPL-X body shape (betas) is ignored: the stand-in keeps its own shape")
    for note in notes:
        log.warning(note)
    return labels, notes


def _write_frames(encoder: subprocess.Popen, pixels: queue.Queue) -> None:
    """Feed raw frames to ffmpeg until the sentinel. After ffmpeg dies the frames are drained unwritten, so
    the renderer never blocks; the failure is reported from ffmpeg's exit code."""
    alive = True
    while (frame := pixels.get()) is not None:
        if alive:
            try:
                encoder.stdin.write(frame)
            except (BrokenPipeError, ValueError):
                alive = False
    with contextlib.suppress(BrokenPipeError):
        encoder.stdin.close()


def render_still(motion: Motion, frame: int, out_png, body_path=None, size: int = 512,
                 label: str | None = None) -> Path:
    """One frame of `motion` as a PNG (README pictures, quick checks)."""
    from PIL import Image

    from .body import iter_body_vertices, load_body

    if not 0 <= frame < motion.num_frames:
        raise InputError(f"frame {frame} is outside the motion's {motion.num_frames} frames")
    body = load_body(body_path)
    stage = _Stage([body], size, multisample=True)
    try:
        vertices, normals = next(itertools.islice(iter_body_vertices(body, motion, batch_frames=1), frame, None))
        avatar = stage.avatars[0]
        stage.place(avatar, vertices[0], normals[0])
        image = _compose(stage.render([(avatar.body_buffer, avatar.head_buffer)]),
                         _label_overlays([label or ""], size), size, 1)[..., 2::-1]  # BGRA -> RGB
    finally:
        stage.close()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out_png)
    return out_png
