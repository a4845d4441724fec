"""The dual-branch diffusion transformer of AsynFusion (paper section 3.2, eq. 4-6).

Two DiT stacks with separate weights, T_E for expression (jaw + expression coefficients) and T_G
for gesture (upper body + fingers). Each block is conditioned on its branch's own diffusion
timestep through adaLN-Zero, and both branches read the same frame-aligned audio features.
After every block an interaction layer lets one branch read the other; which layers exist is the
config field `interaction` (the rows of the paper's Table 2):

    none    no exchange
    e2g     gesture reads expression            (uni-flow E -> G)
    g2e     expression reads gesture            (uni-flow G -> E)
    naive   both read a linear map of the concatenated features (naive fusion)
    cosync  both read each other with cross-attention: F_a += MLP(LN(softmax(Q_a K_b^T / sqrt d) V_b))

The network returns its raw prediction, the clean motion x0 by default (as MDM does for motion), and
diffusion/schedule.py alone turns it into v, noise or x0 by the config field `prediction`; the network
knows nothing of the noise schedule or of the samplers' clocks. Why x0: a v- or noise-predicting network
must carry the per-frame noise of all 258 gesture features through its 192-wide residual stream to
cancel it, and it cannot, so its samples stay jittery (measured: 15-50x the data's joint speed); an
x0-predicting network only has to output smooth motion. Checkpoints can still predict v.

With `continuation`, each branch also reads known frames of its own motion (the clean features and a
mask, `known_frames`): a window can continue motion already shown (live, and long clips joined
window by window). Trained with a random prefix known (training/train.py); the layer starts at zero,
so a model warm-started from one without it is unchanged until it learns to use the frames.

With `pooled_audio`, each branch's conditioning vector (timestep embedding, the adaLN input of every
block) also gets a linear map of the window's mean audio features. The per-frame audio enters only
the token stream, where at high noise the noisy motion drowns it: v6 barely changed its gesture
prediction with the audio at t = 800. Through adaLN the window's overall speech (how loud, how fast,
how much of it is pause) scales and shifts every block at every noise level: how animated the
window is gets decided where the hands' placement is. Zero-initialised like `known`.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sinusoidal(positions: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """(...,) -> (..., dim) sinusoidal embedding, for timesteps and frame positions alike."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device) / half)
    angles = positions.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


# ----------------------------------------------------------------------------
# Embedding layers
# ----------------------------------------------------------------------------
class TimestepEmbedder(nn.Module):
    """Diffusion timestep -> (B, width) conditioning vector gamma(t)."""

    def __init__(self, width: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal(t, self.frequency_dim).to(self.mlp[0].weight.dtype))


class AudioEncoder(nn.Module):
    """Frame-aligned audio features -> F_aud, shared by both branches; two 5-frame convolutions give local context."""

    def __init__(self, audio_dim: int, width: int):
        super().__init__()
        self.input = nn.Linear(audio_dim, width)
        self.conv1 = nn.Conv1d(width, width, kernel_size=5, padding=2)
        self.conv2 = nn.Conv1d(width, width, kernel_size=5, padding=2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.input(audio)).transpose(1, 2)      # (B, width, N)
        h = h + F.gelu(self.conv1(h))
        h = h + F.gelu(self.conv2(h))
        return h.transpose(1, 2)                            # (B, N, width)


# ----------------------------------------------------------------------------
# Attention, DiT block, final layer
# ----------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head attention; self-attention when `source` is None, cross-attention otherwise."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        batch, frames, width = x.shape
        source = x if source is None else source
        q = self.query(x).view(batch, frames, self.heads, -1).transpose(1, 2)              # (B, H, N, d)
        k, v = self.key_value(source).view(batch, source.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v)                                        # (B, H, N, d)
        return self.out(h.transpose(1, 2).reshape(batch, frames, width))


def mlp(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))


class DiTBlock(nn.Module):
    """Self-attention over frames + MLP, both gated and modulated by the conditioning (adaLN-Zero)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        width = config.width
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, config.heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(width, int(width * config.mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ----------------------------------------------------------------------------
# Interaction layers (placed after every block)
# ----------------------------------------------------------------------------
class CoSyncLayer(nn.Module):
    """One direction of CoSync (eq. 5-6): the target branch queries the source branch."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attn = Attention(config.width, config.heads)
        self.norm = nn.LayerNorm(config.width)
        self.mlp = mlp(config.width, 2 * config.width)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return target + self.mlp(self.norm(self.attn(target, source)))


class NaiveFusionLayer(nn.Module):
    """Naive fusion: the target adds a linear map of the per-frame concatenation of both branches."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fuse = nn.Linear(2 * config.width, config.width)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return target + self.fuse(torch.cat([target, source], dim=-1))


# variant -> (target, source, layer): which interaction layers exist after each block
INTERACTION_LAYERS = {
    "none": (),
    "e2g": (("gesture", "expression", CoSyncLayer),),
    "g2e": (("expression", "gesture", CoSyncLayer),),
    "naive": (("expression", "gesture", NaiveFusionLayer), ("gesture", "expression", NaiveFusionLayer)),
    "cosync": (("expression", "gesture", CoSyncLayer), ("gesture", "expression", CoSyncLayer)),
}


class FeatureBuffer:
    """The latest per-block features of each branch (paper section 3.2, asynchronous sampling).

    A branch that steps writes its block outputs here; an interaction layer reads the other
    branch from here, so a branch that does not step this tick is not computed, yet still heard.
    """

    def __init__(self):
        self.features: dict[tuple[int, str], torch.Tensor] = {}

    def write(self, block: int, branch: str, features: torch.Tensor) -> None:
        self.features[block, branch] = features

    def read(self, block: int, branch: str) -> torch.Tensor:
        if (block, branch) not in self.features:
            raise RuntimeError(f"feature buffer has no {branch} features for block {block}: "
                               f"that branch must step before the other can read it")
        return self.features[block, branch]

    def match_rows(self, rows: int) -> None:
        """Resize every entry to `rows` windows for a guided evaluation (sampler guidance.evaluate): the
        first `rows` of a doubled batch, or a batch repeated to double it."""
        for key, features in self.features.items():
            if len(features) > rows:
                self.features[key] = features[:rows]
            elif len(features) < rows:
                self.features[key] = features.repeat(rows // len(features), *([1] * (features.dim() - 1)))


# ----------------------------------------------------------------------------
# The dual-branch model
# ----------------------------------------------------------------------------
class Branch(nn.Module):
    """One DiT stack (T_E or T_G): its own input/audio projections, timestep embedder, blocks and head."""

    def __init__(self, config: ModelConfig, motion_dim: int):
        super().__init__()
        self.input = nn.Linear(motion_dim, config.width)
        self.audio = nn.Linear(config.width, config.width)
        self.timestep = TimestepEmbedder(config.width)
        self.blocks = nn.ModuleList([DiTBlock(config) for _ in range(config.depth)])
        self.final = FinalLayer(config.width, motion_dim)
        # known frames: (clean motion x mask, mask) -> width; only where the config asks for it
        self.known = nn.Linear(motion_dim + 1, config.width) if config.continuation else None
        # the window's mean audio features -> width, added to the conditioning; only where the config asks
        self.pooled_audio = nn.Linear(config.width, config.width) if config.pooled_audio else None


class AsynFusionModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.audio_encoder = AudioEncoder(config.audio_dim, config.width)
        self.branches = nn.ModuleDict({
            "expression": Branch(config, config.expression_dim),
            "gesture": Branch(config, config.gesture_dim),
        })
        self.speaker = nn.Embedding(config.num_speakers, config.width) if config.num_speakers else None
        # interactions[block]["target<-source"]
        self.interactions = nn.ModuleList([
            nn.ModuleDict({f"{target}<-{source}": layer(config)
                           for target, source, layer in INTERACTION_LAYERS[config.interaction]})
            for _ in range(config.depth)
        ])
        self.initialize_weights()

    def initialize_weights(self):
        def basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.apply(basic_init)
        for branch in self.branches.values():
            nn.init.normal_(branch.timestep.mlp[0].weight, std=0.02)
            nn.init.normal_(branch.timestep.mlp[2].weight, std=0.02)
            for block in branch.blocks:  # adaLN-Zero: every block starts as the identity
                nn.init.zeros_(block.adaLN_modulation[-1].weight)
                nn.init.zeros_(block.adaLN_modulation[-1].bias)
            nn.init.zeros_(branch.final.adaLN_modulation[-1].weight)
            nn.init.zeros_(branch.final.adaLN_modulation[-1].bias)
            nn.init.zeros_(branch.final.linear.weight)
            nn.init.zeros_(branch.final.linear.bias)
            for layer in (branch.known, branch.pooled_audio):  # read nothing until trained to
                if layer is not None:
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
        for layers in self.interactions:  # interaction layers start silent, like adaLN-Zero
            for layer in layers.values():
                last = layer.mlp[-1] if isinstance(layer, CoSyncLayer) else layer.fuse
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N, audio_dim) -> F_aud (B, N, width); samplers compute it once per clip."""
        return self.audio_encoder(audio)

    def denoise(
        self,
        x: dict[str, torch.Tensor],
        t: dict[str, torch.Tensor],
        audio_features: torch.Tensor,
        speaker: torch.Tensor | None = None,
        buffer: FeatureBuffer | None = None,
        known: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One network evaluation of the branches present in `x` (each at its own timestep `t[branch]`).

        Branches absent from `x` are not computed; their interaction features come from `buffer`.
        `known[branch]` (B, N, D_branch + 1), from `known_frames`, gives frames already fixed (continuation).
        Returns each computed branch's raw prediction (config.prediction: x0 or v), (B, N, D_branch).
        """
        buffer = FeatureBuffer() if buffer is None else buffer
        frames = audio_features.shape[1]
        position = sinusoidal(torch.arange(frames, device=audio_features.device), self.config.width)  # (N, width)
        h, c = {}, {}
        pooled = audio_features.mean(1) if self.config.pooled_audio else None                          # (B, width)
        for name, motion in x.items():
            branch = self.branches[name]
            h[name] = branch.input(motion) + branch.audio(audio_features) + position.to(motion.dtype)  # (B, N, width)
            if branch.known is not None and known is not None and name in known:
                h[name] = h[name] + branch.known(known[name].to(motion.dtype))
            c[name] = branch.timestep(t[name])                                                       # (B, width)
            if branch.pooled_audio is not None:
                c[name] = c[name] + branch.pooled_audio(pooled.to(c[name].dtype))
            if self.speaker is not None and speaker is not None:
                c[name] = c[name] + self.speaker(speaker)
        for i in range(self.config.depth):
            for name in h:
                h[name] = self.branches[name].blocks[i](h[name], c[name])
                buffer.write(i, name, h[name])
            # every interaction reads block-i features written before any of them is applied
            for key, layer in self.interactions[i].items():
                target, source = key.split("<-")
                if target in h:
                    h[target] = layer(h[target], buffer.read(i, source))
        return {name: self.branches[name].final(h[name], c[name]) for name in h}  # (B, N, D_branch) each

    def branch_modules(self, name: str) -> list[nn.Module]:
        """The modules one branch runs (its stack and the interaction layers it reads through): what a
        sampler times per branch."""
        branch = self.branches[name]
        own = [branch.input, branch.audio, branch.timestep, *branch.blocks, branch.final]
        own += [branch.pooled_audio] if branch.pooled_audio is not None else []
        return own + [layer for layers in self.interactions for key, layer in layers.items()
                      if key.split("<-")[0] == name]

    def forward(self, x, t, audio, speaker=None, keep_audio: torch.Tensor | None = None, known=None):
        """Training entry point: raw audio features in, raw predictions of both branches out.

        keep_audio: (B,) bool; where False the sample sees no audio (F_aud = 0), the unconditional
        model of classifier-free guidance (training's audio dropout, the guided teacher's second half).
        known: as for `denoise`.
        """
        audio_features = self.encode_audio(audio)
        if keep_audio is not None:
            audio_features = audio_features * keep_audio.view(-1, 1, 1).to(audio_features.dtype)
        return self.denoise(x, t, audio_features, speaker, known=known)

    @property
    def continues(self) -> bool:
        """Whether the model reads known frames (config.continuation)."""
        return self.config.continuation

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def known_frames(motion: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, D) clean (normalized) motion and (B, N) bool mask of the frames that are known ->
    (B, N, D + 1), the input of a branch's `known` layer: the known frames' values (0 elsewhere) and the mask."""
    mask = mask.to(motion.dtype).unsqueeze(-1)                       # (B, N, 1)
    return torch.cat([motion * mask, mask], dim=-1)                  # (B, N, D + 1)
