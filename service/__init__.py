"""Service: the thin BentoML REST API over the registered model's answer (``service.service``)."""
