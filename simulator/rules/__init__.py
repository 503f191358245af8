"""Credit assignment other than diffusion (the engine), on any ``Model``: ``relaxation``
(Activation Relaxation, Millidge et al.) and ``predictive_coding`` (IL and Z-IL,
Salvatori et al.)."""
