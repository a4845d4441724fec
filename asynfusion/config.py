"""The model's configuration: one dataclass, saved beside the weights in every checkpoint."""

from dataclasses import asdict, dataclass, fields

from .motion import EXPRESSION_SPACES, GESTURE_DIM, expression_dim_of

BRANCHES = ("expression", "gesture")  # the model's two branches, T_E and T_G, in this order everywhere
INTERACTIONS = ("none", "e2g", "g2e", "naive", "cosync")  # the rows of the paper's Table 2
PREDICTIONS = ("x0", "v")


@dataclass
class ModelConfig:
    expression_coeffs: int = 52     # expression coefficients modelled (of the file's 100); 52 = ARKit set
    expression_space: str = "arkit"  # what those coefficients mean: "arkit" (built-in corpus) or "flame" (BEAT2)
    audio_encoder: str = "mel"      # "mel" features, or a local Wav2Vec2/HuBERT directory
    audio_dim: int = 44             # width of the audio features the encoder gives
    width: int = 192                # transformer width of each branch (CoSync needs both equal)
    depth: int = 4                  # DiT blocks per branch; one CoSync layer after each
    heads: int = 4
    mlp_ratio: float = 4.0
    interaction: str = "cosync"     # none | e2g | g2e | naive | cosync
    num_speakers: int = 0           # >0 adds a learned speaker/style embedding to the conditioning
    window_frames: int = 64         # training window; long audio is generated in windows of this length
    num_train_timesteps: int = 1000
    prediction: str = "x0"          # what the network outputs: "x0" (clean motion) or "v"; see model.py
    continuation: bool = False      # each branch also reads known frames (motion already shown): model.py
    pooled_audio: bool = False      # each branch's adaLN conditioning also reads the window's mean audio: model.py

    def __post_init__(self):
        if self.interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {self.interaction!r}")
        if self.expression_space not in EXPRESSION_SPACES:
            raise ValueError(f"expression_space must be one of {EXPRESSION_SPACES}, got {self.expression_space!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")

    @property
    def expression_dim(self) -> int:
        return expression_dim_of(self.expression_coeffs)

    @property
    def gesture_dim(self) -> int:
        return GESTURE_DIM

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**{"prediction": "v", **values})  # checkpoints from before the field predicted v
