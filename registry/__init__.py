"""Registry: train, evaluate and promote predictor versions in the MLflow Model Registry, and the one
loader every consumer uses. Maps the bundled reference data onto the predictor's schema."""
