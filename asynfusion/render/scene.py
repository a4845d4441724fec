"""The scene: the OpenGL platform, and the pyrender stage that draws one frame of N avatars.

One scene holds every avatar of a side-by-side comparison, so N avatars cost one render pass,
not N. The face close-up is in that same pass: a scaled copy of each head, in front of a card in
the tile's corner, seen by the same orthographic camera. Each frame only re-uploads vertex
positions and normals into the meshes' existing GPU buffers.
"""

import ctypes
import ctypes.util
import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import settings
from ..errors import InputError
from ..motion import JOINT
from .draws import DrawList
from .lod import main_view_faces
from .outfit import cuts as outfit_cuts
from .outfit import vertex_colors
from .shaders import FRAGMENT_SHADER, VERTEX_SHADER

TILT_DEGREES = 8.0        # the camera looks slightly down, so the floor shows behind the body
VIEW_BOTTOM, VIEW_TOP = 0.30, 1.08  # the framed band, as fractions of the body's height: hands to above the head
INSET_FRACTION = 0.40     # face close-up card: this fraction of the tile's side
BACKGROUND = (0.93, 0.93, 0.92)
FLOOR_COLOR = (0.78, 0.77, 0.75)
CARD_COLOR, CARD_BORDER = (0.86, 0.89, 0.92), (0.45, 0.48, 0.52)


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
    if settings.gl_platform():
        return settings.gl_platform()
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

    _open, _lock = 0, threading.Lock()  # stages whose OpenGL context is open, in this process

    def __init__(self, bodies: list, size: int, multisample: bool = False):
        choose_gl_platform()
        import pyrender
        import pyrender.renderer
        from pyrender.shader_program import ShaderProgramCache

        self.size, self.count, self.multisample = size, len(bodies), multisample
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

        with _Stage._lock:  # not while another stage terminates the display they share (close)
            self.renderer = pyrender.OffscreenRenderer(size * self.count, size)
            _Stage._open += 1
        self.renderer._renderer._program_cache = ShaderProgramCache(shader_dir=self._write_shaders())
        # The first render creates the framebuffers and uploads every mesh, and records its draws to be
        # replayed for every frame (draws.py); afterwards only vertex data changes. pyrender always asks for
        # 4x MSAA, which costs llvmpipe 2.4x the frame time (49 vs 119 fps at 512 px): videos render without
        # it, stills with it.
        allocate = pyrender.renderer.glRenderbufferStorageMultisample
        if not multisample:
            pyrender.renderer.glRenderbufferStorageMultisample = (
                lambda target, samples, fmt, width, height: allocate(target, 0, fmt, width, height))
        try:
            self.draws, _ = DrawList.record(self.renderer, self.scene)
        finally:
            pyrender.renderer.glRenderbufferStorageMultisample = allocate

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
        colors = vertex_colors(body)
        rgba = np.concatenate([colors / 255.0, np.ones((len(template), 1))], 1).astype(np.float32)
        cuts = outfit_cuts(body)
        # videos draw the full-body view with the lighter mesh (lod.py); stills, and the close-up, the full one
        main_faces = faces if self.multisample else main_view_faces(
            template, faces, body.lbs_weights.detach().numpy(), colors, self.size / self.tile)
        body_primitive = _primitive(template, main_faces, rgba, cuts, two_sided=not cullable)
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

    def _read_color(self):
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
        self.draws.draw()
        return self._read_color()

    def release(self) -> None:
        """Unbind the OpenGL context from this thread, so that another thread can render with it (EGL)."""
        from OpenGL import EGL

        platform = self.renderer._platform
        EGL.eglMakeCurrent(platform._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)

    def close(self) -> None:
        """Free the stage's OpenGL resources and context (in any thread, once no thread has it current).

        EGL stages of one process share one EGLDisplay, which pyrender's delete would terminate under
        the others' feet (a video draws with two stages): only the last stage open terminates it."""
        from OpenGL import EGL

        platform = self.renderer._platform
        platform.make_current()  # the context may have been made in another thread
        self.renderer._renderer.delete()
        with _Stage._lock:
            _Stage._open -= 1
            if _Stage._open == 0 or not hasattr(platform, "_egl_display"):
                platform.delete_context()
            else:
                EGL.eglMakeCurrent(platform._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
                EGL.eglDestroyContext(platform._egl_display, platform._egl_context)
        self.renderer._renderer = self.renderer._platform = None
        self._shader_dir.cleanup()
