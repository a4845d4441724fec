"""AsynFusion: speech -> SMPL-X facial expressions and body/hand gestures.

A dual-branch diffusion transformer (expression and gesture) with CoSync cross-attention between
the branches, sampled with DDIM, synchronous LCM or asynchronous LCM (fewer face steps than body
steps). `Pipeline` is the entry point; heavy dependencies (rendering, Gradio, transformers) are
imported only where they are used.
"""

__version__ = "0.1.0"
