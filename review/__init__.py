"""Review: presents the registered model's answer (the ``predict`` and ``review`` commands, the
verdict against a policy, the HTML report, plots). Reads typed fields of the answer, computes none."""
