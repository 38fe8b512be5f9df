"""NICo Flow for Kubernetes: rack-level power and firmware operations as an operator."""

__version__ = "0.1.0"
