"""Credit assignment other than diffusion (the engine), on any ``Model``: ``relaxation``
(Activation Relaxation, paper 001) and ``predictive_coding`` (IL and Z-IL, paper 002)."""
