"""Rotation conversions between axis-angle (the file format) and 6D (the model's representation).

The 6D representation is the first two columns of the rotation matrix (Zhou et al., CVPR 2019):
continuous, unlike axis-angle, so the network never sees a wrap-around. Axis-angle <-> matrix is
scipy's; 6D -> matrix is Gram-Schmidt, the one step scipy does not provide.
"""

import numpy as np
from scipy.spatial.transform import Rotation


def axis_angle_to_6d(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 6): first two matrix columns, column-major."""
    shape = axis_angle.shape[:-1]
    matrix = Rotation.from_rotvec(axis_angle.reshape(-1, 3).astype(np.float64)).as_matrix()  # (n, 3, 3)
    six = np.concatenate([matrix[:, :, 0], matrix[:, :, 1]], axis=-1)  # (n, 6)
    return six.reshape(*shape, 6).astype(np.float32)


def rotation_6d_to_matrix(six: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt; any 6-vector (not only exact ones) gives a rotation.

    Degenerate inputs still do: a zero first column becomes the x axis, and a second column parallel
    to the first (or zero) is replaced by the coordinate axis least aligned with it. An untrained
    x0-predicting model outputs exactly such vectors (all zeros for features with identity stats).
    """
    eps = 1e-8
    a1, a2 = six[..., 0:3].astype(np.float64), six[..., 3:6].astype(np.float64)
    a1 = np.where(np.linalg.norm(a1, axis=-1, keepdims=True) < eps, np.array([1.0, 0.0, 0.0]), a1)
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    a2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    axis = np.eye(3)[np.argmin(np.abs(b1), axis=-1)]                     # the axis least aligned with b1
    fallback = axis - (b1 * axis).sum(-1, keepdims=True) * b1
    a2 = np.where(np.linalg.norm(a2, axis=-1, keepdims=True) < eps, fallback, a2)
    b2 = a2 / np.linalg.norm(a2, axis=-1, keepdims=True)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def rotation_6d_to_axis_angle(six: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3) axis-angle."""
    shape = six.shape[:-1]
    matrix = rotation_6d_to_matrix(six.reshape(-1, 6))
    return Rotation.from_matrix(matrix).as_rotvec().reshape(*shape, 3).astype(np.float32)
