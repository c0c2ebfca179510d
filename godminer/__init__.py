"""godminer: a miner for G.O.D (Gradients on Demand, Bittensor subnet 56)."""

__version__ = "0.1.0"
