"""Pipeline: the stage commands in order (``bootstrap``) and ``monitor`` (collect new checkpoints,
nowcast through the registered model, alarm)."""
