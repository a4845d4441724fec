"""The frame loop's OpenGL calls: pyrender's draws of a scene, recorded once and replayed directly.

pyrender re-derives every draw each frame (sorting nodes, choosing programs, looking up and setting
about 60 uniforms through PyOpenGL's wrappers): on llvmpipe that Python costs more of the main
thread than the draws themselves, and the main thread is the renderer's bottleneck. Nothing but the
vertex data changes between two frames of a video, so `DrawList.record` watches one pyrender render,
keeps what it drew (program, vertex array, index count, culling, material colours, in its order), and
`DrawList.draw` issues just those calls through PyOpenGL's raw entry points. The camera and model
matrices stay in the programs as pyrender set them; the material colours are set again per draw,
because the floor and the close-up's cards share one program.
"""

import ctypes
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Draw:
    program: int
    vertex_array: int
    mode: int
    index_count: int
    instances: int
    cull: bool
    color_location: int
    color: tuple
    emissive_location: int
    emissive: tuple


class DrawList:
    """One scene's draws, in pyrender's order, replayable without pyrender."""

    def __init__(self, draws: list[_Draw], framebuffer: int, width: int, height: int, clear: tuple):
        self.draws, self.framebuffer, self.width, self.height, self.clear = draws, framebuffer, width, height, clear

    @classmethod
    def record(cls, offscreen_renderer, scene) -> tuple["DrawList", np.ndarray]:
        """Render `scene` once with pyrender, recording its draws; returns (draw list, that frame)."""
        from OpenGL import GL

        renderer = offscreen_renderer._renderer
        seen = []

        def record(primitive, pose, program, flags):
            if not np.allclose(pose, np.eye(4)):
                raise ValueError("DrawList replays meshes at their identity pose only")
            seen.append((primitive, program))
            return type(renderer)._bind_and_draw_primitive(renderer, primitive, pose, program, flags)

        renderer._bind_and_draw_primitive = record  # an instance attribute shadows the method for one render
        try:
            frame = offscreen_renderer.render(scene)
        finally:
            del renderer._bind_and_draw_primitive
        draws = []
        for primitive, program in seen:
            if primitive.indices is None or primitive.material.alphaMode == "BLEND":
                raise ValueError("DrawList replays opaque indexed meshes only")
            program_id = program._program_id
            draws.append(_Draw(
                program_id, primitive._vaid, int(primitive.mode), int(primitive.indices.size),
                1 if primitive.poses is None else len(primitive.poses), not primitive.material.doubleSided,
                GL.glGetUniformLocation(program_id, "material.base_color_factor"),
                tuple(float(c) for c in primitive.material.baseColorFactor),
                GL.glGetUniformLocation(program_id, "material.emissive_factor"),
                tuple(float(c) for c in primitive.material.emissiveFactor)))
        width, height = renderer._main_fb_dims
        return cls(draws, renderer._main_fb_ms, width, height, tuple(scene.bg_color)), frame

    def draw(self) -> None:
        """Clear the frame and issue every draw (the context must be current)."""
        from OpenGL.raw.GL import _types as t
        from OpenGL.raw.GL.VERSION import GL_1_0, GL_2_0, GL_3_0, GL_3_1

        GL_3_0.glBindFramebuffer(GL_3_0.GL_DRAW_FRAMEBUFFER, self.framebuffer)
        GL_1_0.glViewport(0, 0, self.width, self.height)
        GL_1_0.glEnable(GL_1_0.GL_DEPTH_TEST)
        GL_1_0.glDepthMask(GL_1_0.GL_TRUE)
        GL_1_0.glDepthFunc(GL_1_0.GL_LESS)
        GL_1_0.glDisable(GL_1_0.GL_BLEND)  # pyrender blends with (ONE, ZERO): the same as no blending
        GL_1_0.glPolygonMode(GL_1_0.GL_FRONT_AND_BACK, GL_1_0.GL_FILL)
        GL_1_0.glCullFace(GL_1_0.GL_BACK)
        GL_1_0.glClearColor(*self.clear)
        GL_1_0.glClear(GL_1_0.GL_COLOR_BUFFER_BIT | GL_1_0.GL_DEPTH_BUFFER_BIT)
        for d in self.draws:
            GL_2_0.glUseProgram(d.program)
            GL_2_0.glUniform4f(d.color_location, *d.color)
            GL_2_0.glUniform3f(d.emissive_location, *d.emissive)
            (GL_1_0.glEnable if d.cull else GL_1_0.glDisable)(GL_1_0.GL_CULL_FACE)
            GL_3_0.glBindVertexArray(d.vertex_array)
            GL_3_1.glDrawElementsInstanced(d.mode, d.index_count, t.GL_UNSIGNED_INT,
                                           ctypes.c_void_p(0), d.instances)
        GL_3_0.glBindVertexArray(0)
        GL_2_0.glUseProgram(0)
        GL_1_0.glFlush()
