"""The binary glTF container (GLB) and the buffer of one asset: bufferViews, accessors, sparse accessors.

Written by hand rather than through pygltflib: the container is a 12-byte header and two chunks (JSON, BIN),
the document is plain dicts either way, and pygltflib would add six runtime packages (marshmallow,
dataclasses-json, ...) for dataclass wrappers that do not validate anything. The Khronos validator checks
what this writes (tests/test_export.py), and the tests read it back through pygltflib, an independent reader.
"""

import json
import struct

import numpy as np

GLB_MAGIC, GLB_VERSION = b"glTF", 2
CHUNK_JSON, CHUNK_BIN = b"JSON", b"BIN\x00"
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
COMPONENT_TYPES = {np.dtype(np.float32): 5126, np.dtype(np.uint8): 5121, np.dtype(np.uint16): 5123,
                   np.dtype(np.uint32): 5125}
ACCESSOR_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


def _padded(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


class Buffer:
    """The BIN chunk being built, with the bufferViews and accessors that point into it."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.length = 0
        self.buffer_views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: np.ndarray, target: int | None = None) -> int:
        """Append `data` (4-byte aligned) as a bufferView; its index."""
        raw = np.ascontiguousarray(data).tobytes()
        view = {"buffer": 0, "byteOffset": self.length, "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        raw = _padded(raw, b"\x00")
        self.parts.append(raw)
        self.length += len(raw)
        self.buffer_views.append(view)
        return len(self.buffer_views) - 1

    def accessor(self, data: np.ndarray, target: int | None = None, normalized: bool = False,
                 bounds: bool = False) -> int:
        """An accessor over `data` ((N,) or (N, k)) in its own bufferView; `bounds` adds min/max."""
        data = np.ascontiguousarray(data)
        accessor = {"bufferView": self.view(data, target), **self._layout(data)}
        if normalized:
            accessor["normalized"] = True
        if bounds:
            accessor.update(_bounds(data))
        return self._add(accessor)

    def compact_accessor(self, dense: np.ndarray) -> int:
        """A float (N, 3) accessor stored as its non-zero rows only (glTF sparse, zeros elsewhere).

        Morph targets move a few thousand of the body's vertices each: the rows that move cost an index
        and a value, the others nothing. A target that moves no vertex is an accessor of zeros (no data);
        one that moves nearly all of them is stored densely, which is then smaller.
        """
        dense = np.ascontiguousarray(dense, np.float32)
        moved = np.flatnonzero(np.any(dense != 0, axis=1))
        index_type = np.uint16 if len(dense) <= 0xFFFF else np.uint32
        if len(moved) * (np.dtype(index_type).itemsize + dense.itemsize * dense.shape[1]) >= dense.nbytes:
            return self.accessor(dense, bounds=True)
        accessor = {**self._layout(dense), **_bounds(dense)}
        if len(moved):
            accessor["sparse"] = {
                "count": len(moved),
                "indices": {"bufferView": self.view(moved.astype(index_type)),
                            "componentType": COMPONENT_TYPES[np.dtype(index_type)]},
                "values": {"bufferView": self.view(dense[moved])},
            }
        return self._add(accessor)

    def binary(self) -> bytes:
        return b"".join(self.parts)

    def _add(self, accessor: dict) -> int:
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    @staticmethod
    def _layout(data: np.ndarray) -> dict:
        width = 1 if data.ndim == 1 else int(np.prod(data.shape[1:]))
        return {"componentType": COMPONENT_TYPES[data.dtype], "count": len(data), "type": ACCESSOR_TYPES[width]}


def _bounds(data: np.ndarray) -> dict:
    """Per-component min and max, as glTF requires for positions and animation inputs."""
    rows = data.reshape(len(data), -1)
    cast = float if data.dtype.kind == "f" else int
    return {"min": [cast(v) for v in rows.min(0)], "max": [cast(v) for v in rows.max(0)]}


def glb_bytes(document: dict, buffer: Buffer) -> bytes:
    """A GLB file: header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
    binary = buffer.binary()
    document = {**document, "buffers": [{"byteLength": len(binary)}], "bufferViews": buffer.buffer_views,
                "accessors": buffer.accessors}
    text = _padded(json.dumps(document, separators=(",", ":")).encode(), b" ")
    chunks = struct.pack("<I4s", len(text), CHUNK_JSON) + text + struct.pack("<I4s", len(binary), CHUNK_BIN) + binary
    return struct.pack("<4sII", GLB_MAGIC, GLB_VERSION, 12 + len(chunks)) + chunks
