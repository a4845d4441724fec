"""Training the dual-branch model and distilling its per-branch consistency models.

    loop.py     what both share: ranks, data, learning rate, the optimizer step with EMA, resumable state
    train.py    diffusion training (paper eq. 8-11)
    distill.py  latent-consistency distillation, each branch on its own solver grid
    fold.py     folding the LCM samplers' guidance into the student's weights (one evaluation a step)
    commands.py the train, distill and fold-guidance commands of the command line
"""
