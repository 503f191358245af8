"""The credit-assignment rules other than diffusion, each on any ``Model``:
``relaxation`` Activation Relaxation (paper 001: ticks and the closed form, the
four variants) and ``predictive_coding`` IL and Z-IL (paper 002, SPEC §4).
Diffusion itself is the engine; the backprop oracle is ``model.reference``."""
