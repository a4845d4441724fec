"""Training the dual-branch model and distilling its per-branch consistency models.

    loop.py     what both share: ranks, data, learning rate, the optimizer step with EMA, resumable state
    train.py    diffusion training (paper eq. 8-11)
    distill.py  latent-consistency distillation, each branch on its own solver grid
"""
