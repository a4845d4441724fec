"""Measuring the motion and the speed.

    metrics.py      kinematic and audio-motion metrics (beat alignment, lip sync, calm in pauses, ...)
    autoencoder.py  the motion autoencoder whose latents the Frechet distances use
    evaluate.py     the paper's tables on a held-out split (`asynfusion eval`)
    realism.py      statistics against a real capture (`asynfusion realism`)
    bench.py        the samplers' timings on this machine (`asynfusion bench`)
"""
