"""maforecast: forecast massive-activation emergence in transformers before training.

This package holds what every stage shares: settings, the table schemas that cross stage
boundaries, MLflow conventions and the CLI root. Stage code lives in the top-level packages
``collector``, ``fitting``, ``predictor`` and ``service``.
"""

__version__ = "0.1.0"
