"""EAQ: diffusion-based episode augmentation for offline multi-agent RL, guided by Q_tot.

Stages (data flows one way): env -> behaviour -> data -> offline -> diffusion -> evaluation
-> pipeline. No stage imports a later one.
"""

__version__ = "0.1.0"
