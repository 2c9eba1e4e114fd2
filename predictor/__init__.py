"""Predictor: everything that answers (the registered model ships exactly this package as code): the
architecture schema, HF config mapping, evidence, engine, timeline, nowcast, precision risk, the mitigation
knowledge base, the answer builder and the pyfunc."""
