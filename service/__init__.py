"""Service: the BentoML REST API (service.service), the rule engine over the mitigation knowledge base,
precision-risk checks, plots and the ``predict`` / ``serve`` / ``bootstrap`` commands."""
