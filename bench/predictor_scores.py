"""Score the predictor on the bundled reference data (README table).

python -m bench.predictor_scores [N_ESTIMATORS] [LEARNERS, comma-separated; default: the predictor's default]"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

warnings.simplefilter("ignore")


def main(n_estimators: int = 100, learners: tuple[str, ...] | None = None) -> None:
    os.environ.setdefault("MAFORECAST_DATA_HOME", tempfile.mkdtemp(prefix="maforecast-bench-"))
    from predictor.dataset import fits_from_stats, reference_stats
    from predictor.model import DEFAULT_LEARNERS
    from predictor.registry import scores_table, train

    stats = reference_stats()
    fits = fits_from_stats(stats[stats["step"].notna()])
    res = train(fits, stats, learners=learners or DEFAULT_LEARNERS, n_estimators=n_estimators, register=False)
    t = scores_table(res.bundle)
    print(t.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if res.bundle.curve_scores is not None:
        print(res.bundle.curve_scores.to_string(index=False))
    print("headline_lomo_r2", res.metrics["headline_lomo_r2"], "baseline", res.metrics["headline_baseline_lomo_r2"])
    print(res.bundle.n_rows)
    t.to_csv(os.path.join(os.environ["MAFORECAST_DATA_HOME"], "predictor_scores.csv"), index=False)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else None)
